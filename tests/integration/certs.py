"""Test certificates made with the JDK's ``keytool``: a CA, a broker keystore it signed, a
truststore, and the CA as PEM for the Python clients.

The broker certificate names ``127.0.0.1`` and ``localhost`` (subject alternative names), so
clients keep hostname checking on against the loopback broker. Everything is valid for two
days and lives in the directory given (a test's ``tmp_path``).
"""
from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from stream.brokers.java import find_keytool


@dataclass(frozen=True)
class BrokerCertificates:
    ca_pem: Path  # the CA certificate, PEM: ssl_cafile of the Python clients
    keystore: Path  # PKCS12: the broker's key and its CA-signed certificate chain
    truststore: Path  # PKCS12: the CA, for Java clients
    password: SecretStr  # of the keystore, its key and the truststore


def _keytool(keytool: str, *args: str) -> None:
    done = subprocess.run([keytool, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"keytool {args[0]} failed (exit {done.returncode}): {(done.stdout + done.stderr)[-2000:]}")


def make_certificates(directory: Path) -> BrokerCertificates:
    keytool = find_keytool()
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    ca_store, ca_pem = directory / "ca.p12", directory / "ca.pem"
    keystore, csr, signed = directory / "broker.p12", directory / "broker.csr", directory / "broker.pem"
    truststore = directory / "truststore.p12"
    common = ["-storetype", "PKCS12", "-storepass", password]
    key = ["-keyalg", "RSA", "-keysize", "2048", "-validity", "2", "-keypass", password]
    _keytool(keytool, "-genkeypair", "-alias", "ca", "-dname", "CN=gnnrec test CA", "-ext", "bc:c",
             "-keystore", str(ca_store), *common, *key)
    _keytool(keytool, "-exportcert", "-rfc", "-alias", "ca", "-file", str(ca_pem), "-keystore", str(ca_store), *common)
    _keytool(keytool, "-genkeypair", "-alias", "broker", "-dname", "CN=localhost",
             "-keystore", str(keystore), *common, *key)
    _keytool(keytool, "-certreq", "-alias", "broker", "-file", str(csr), "-keystore", str(keystore), *common)
    _keytool(keytool, "-gencert", "-alias", "ca", "-infile", str(csr), "-outfile", str(signed), "-rfc",
             "-validity", "2", "-ext", "SAN=ip:127.0.0.1,dns:localhost", "-ext", "EKU=serverAuth",
             "-keystore", str(ca_store), *common)
    # The chain goes in CA first, so keytool can link the signed certificate to the broker's key.
    _keytool(keytool, "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem),
             "-keystore", str(keystore), *common)
    _keytool(keytool, "-importcert", "-alias", "broker", "-file", str(signed), "-keystore", str(keystore), *common)
    _keytool(keytool, "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem),
             "-keystore", str(truststore), *common)
    return BrokerCertificates(ca_pem, keystore, truststore, SecretStr(password))

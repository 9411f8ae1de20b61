"""A SASL_SSL client listener for the Apache Kafka launcher: TLS, then SASL PLAIN or SCRAM.

:func:`stream.brokers.apache.start_apache_kafka` given a :class:`SaslSslListener` serves
clients only on that listener; the broker's own traffic (inter-broker, and the readiness
probe of :mod:`stream.brokers.probe`, which speaks neither TLS nor SASL) uses a second,
plaintext listener named ``INTERNAL`` on loopback, and the KRaft controller listener stays
plaintext on loopback as well. Both PLAIN and SCRAM-SHA-512 are enabled for the same users:
PLAIN users live in the listener's JAAS configuration, SCRAM users are written into the
cluster metadata when the storage is formatted (``kafka-storage format --add-scram``, KIP-900:
KRaft has no ZooKeeper to hold them).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pydantic import SecretStr

MECHANISMS = ("PLAIN", "SCRAM-SHA-512")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Passwords go inside a JAAS string and an --add-scram list, where quotes, commas, brackets and
# backslashes are syntax; test users do not need them.
_PASSWORD = re.compile(r"^[A-Za-z0-9._~+/=@%^*!-]{1,128}$")


@dataclass(frozen=True)
class SaslSslListener:
    """What the SASL_SSL listener needs: the broker's PKCS12 keystore and the client users.

    ``keystore`` holds the broker's key and a certificate for ``127.0.0.1`` (and ``localhost``)
    signed by a CA the clients trust; ``users`` maps user names to passwords, each valid for
    both PLAIN and SCRAM-SHA-512.
    """

    keystore: Path
    keystore_password: SecretStr
    users: Mapping[str, SecretStr] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not Path(self.keystore).is_file():
            raise ValueError(f"SaslSslListener.keystore {self.keystore} is not a file; make a PKCS12 keystore "
                             "with keytool (tests/integration/certs.py shows how)")
        if not self.users:
            raise ValueError("SaslSslListener.users is empty: give at least one user name and password")
        for name, password in self.users.items():
            if not _NAME.match(name):
                raise ValueError(f"SASL user name {name!r}: use 1-64 of A-Z a-z 0-9 . _ -")
            if not _PASSWORD.match(password.get_secret_value()):
                raise ValueError(f"password of SASL user {name!r}: use 1-128 letters, digits or ._~+/=@%^*!- "
                                 "(quotes, commas, brackets and backslashes are JAAS syntax)")
        object.__setattr__(self, "users", MappingProxyType(dict(self.users)))

    def server_properties(self, host: str, port: int, internal_port: int, controller_port: int) -> str:
        """The listener lines of ``server.properties`` (they hold secrets: write the file 0600)."""
        jaas_users = " ".join(f'user_{name}="{pw.get_secret_value()}"' for name, pw in self.users.items())
        store = self.keystore_password.get_secret_value()
        prefix = "listener.name.sasl_ssl."
        return "\n".join([
            f"listeners=INTERNAL://{host}:{internal_port},SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners=INTERNAL://{host}:{internal_port},SASL_SSL://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=INTERNAL",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL",
            f"{prefix}sasl.enabled.mechanisms={','.join(MECHANISMS)}",
            f"{prefix}ssl.keystore.type=PKCS12",
            f"{prefix}ssl.keystore.location={Path(self.keystore).resolve()}",
            f"{prefix}ssl.keystore.password={store}",
            f"{prefix}ssl.key.password={store}",
            f"{prefix}plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
            f"required {jaas_users};",
            f"{prefix}scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
            "required;",
        ]) + "\n"

    def storage_format_args(self) -> list[str]:
        """``--add-scram`` arguments of ``kafka-storage format``: one SCRAM-SHA-512 credential per user."""
        args: list[str] = []
        for name, password in self.users.items():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password.get_secret_value()}]"]
        return args


def redact(cmd: list[str]) -> list[str]:
    """``cmd`` with the values of ``--add-scram`` hidden, for logs and error messages."""
    return [("--add-scram <redacted>" if prev == "--add-scram" else arg) for prev, arg in zip(["", *cmd], cmd)
            if arg != "--add-scram"]

"""How gnnrec's Kafka clients encrypt and authenticate: one frozen :class:`KafkaSecurity`,
turned here, and only here, into the options of each client library (aiokafka, kafka-python,
faust).

Protocols are Kafka's own names: ``PLAINTEXT``, ``SSL`` (TLS), ``SASL_PLAINTEXT`` and
``SASL_SSL`` (SASL over TLS). SASL mechanisms: ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``.
TLS trusts the system's certificate authorities unless ``ssl_cafile`` (PEM) names others;
``ssl_certfile`` and ``ssl_keyfile`` (PEM) add a client certificate for brokers that ask for
one. Every client gets the same :class:`ssl.SSLContext`, so TLS behaves the same whichever
library connects. Passwords are ``SecretStr``: ``repr``, logs and tracebacks show ``**********``;
the plain value is read only when a client's options are built.

    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "alice", SecretStr(password),
                             ssl_cafile=Path("ca.pem"))
    AIOKafkaProducer(bootstrap_servers=bootstrap, **security.aiokafka_options())

The default, ``KafkaSecurity()``, is PLAINTEXT and adds no option at all.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from aiokafka.errors import KafkaError
from pydantic import SecretStr

if TYPE_CHECKING:
    from faust.auth import Credentials

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PROTOCOLS: Final = get_args(SecurityProtocol)
MECHANISMS: Final = get_args(SaslMechanism)


class SecurityConfigError(ValueError):
    """A :class:`KafkaSecurity` that cannot work; ``setting`` names the field at fault, so a
    caller can name its own flag or variable for it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True)
class KafkaSecurity:
    """Encryption and authentication of every connection to the brokers (validated on creation)."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SecurityConfigError("security_protocol", f"{self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.sasl_mechanism not in MECHANISMS:
            raise SecurityConfigError("sasl_mechanism",
                                      f"{self.sasl_mechanism!r} is not one of {', '.join(MECHANISMS)}")
        if self.uses_sasl:
            if not self.sasl_username:
                raise SecurityConfigError("sasl_username", f"security protocol {self.protocol} needs a SASL user name")
            if self.sasl_password is None or not self.sasl_password.get_secret_value():
                raise SecurityConfigError("sasl_password", f"security protocol {self.protocol} needs the SASL "
                                                           f"password of user {self.sasl_username!r}")
        elif self.sasl_username or self.sasl_password is not None:
            # Credentials that would silently go unused: the operator believes they authenticate.
            field = "sasl_username" if self.sasl_username else "sasl_password"
            raise SecurityConfigError(field, f"is set, but security protocol {self.protocol} does not use SASL; "
                                             "choose SASL_SSL (or SASL_PLAINTEXT), or unset it")
        files = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile, "ssl_keyfile": self.ssl_keyfile}
        for name, path in files.items():
            if path is None:
                continue
            if not self.uses_ssl:
                raise SecurityConfigError(name, f"is set, but security protocol {self.protocol} does not use TLS; "
                                                "choose SSL or SASL_SSL, or unset it")
            if not Path(path).is_file():
                raise SecurityConfigError(name, f"{path} does not exist or is not a file")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise SecurityConfigError("ssl_certfile", "a client key (ssl_keyfile) needs its certificate too")
        if self.ssl_key_password is not None and self.ssl_certfile is None:
            raise SecurityConfigError("ssl_key_password", "is set, but there is no client certificate (ssl_certfile)")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def describe(self) -> str:
        """One line for logs and error messages, without any secret: ``SASL_SSL (SCRAM-SHA-512 as alice)``."""
        return f"{self.protocol} ({self.sasl_mechanism} as {self.sasl_username})" if self.uses_sasl else self.protocol

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context every client uses (None without TLS); certificate files are read now."""
        if not self.uses_ssl:
            return None
        from aiokafka.helpers import create_ssl_context
        try:
            context = create_ssl_context(cafile=self.ssl_cafile)
        except ssl.SSLError as exc:
            raise SecurityConfigError("ssl_cafile", f"cannot load {self.ssl_cafile} ({exc}); it must hold "
                                                    "PEM certificates") from None
        if self.ssl_certfile is not None:
            password = None if self.ssl_key_password is None else self.ssl_key_password.get_secret_value()
            try:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password)
            except ssl.SSLError as exc:
                raise SecurityConfigError("ssl_keyfile" if self.ssl_keyfile else "ssl_certfile",
                                          f"cannot load the client certificate and key ({exc}); they must be PEM, "
                                          "the key must match the certificate, and ssl_key_password the key") from None
        # The chain is verified either way; only the match of the broker's name is optional.
        context.check_hostname = self.ssl_check_hostname
        return context

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and ``AIOKafkaAdminClient``."""
        if self.protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol, "ssl_context": self.ssl_context()}
        if self.uses_sasl:
            options.update(self._sasl_options())
        return options

    def kafka_python_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's ``KafkaProducer`` and ``KafkaConsumer``
        (the same names as aiokafka's; kafka-python takes the SSL context as it is)."""
        return self.aiokafka_options()

    def faust_credentials(self) -> Credentials | None:
        """``broker_credentials`` for a ``faust.App`` (None for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return None
        import faust
        if self.uses_sasl:
            return faust.SASLCredentials(username=self.sasl_username, password=self._password(),
                                         ssl_context=self.ssl_context(), mechanism=self.sasl_mechanism)
        return faust.SSLCredentials(self.ssl_context())

    def _sasl_options(self) -> dict[str, Any]:
        # aiokafka and kafka-python take SCRAM credentials under the sasl_plain_* names too.
        return {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self._password()}

    def _password(self) -> str:
        if self.sasl_password is None:
            raise SecurityConfigError("sasl_password", "is not set")
        return self.sasl_password.get_secret_value()


PLAINTEXT: Final = KafkaSecurity()


class SecurityRefused(SecurityConfigError):
    """The broker refused these settings: TLS verification or SASL authentication failed."""


async def check_security(bootstrap: str, security: KafkaSecurity, timeout_s: float = 10.0) -> None:
    """Connect once to the first reachable bootstrap server the way every client will, send
    one request, and raise :class:`SecurityRefused`, naming the setting to change, when the
    broker's certificate is not trusted, the credentials are refused, or the broker cuts the
    connection off (Kafka's answer to a client whose protocol does not match the listener's).

    The clients themselves report all of these as "unable to bootstrap"; a process calls this
    first to fail fast with the reason. A broker that cannot be reached at all is not this
    check's business (the clients retry and report that): it returns quietly.
    """
    if security.protocol == "PLAINTEXT":
        return
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
    from aiokafka.protocol.metadata import MetadataRequest
    options = security.aiokafka_options()
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        stage = "the TLS handshake" if security.uses_ssl else "SASL authentication"
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), client_id="gnnrec-security-check",
                            request_timeout_ms=int(timeout_s * 1000), **options), timeout_s)
            stage = "the first request after " + ("SASL authentication" if security.uses_sasl else "the TLS handshake")
            try:
                await asyncio.wait_for(conn.send(MetadataRequest([])), timeout_s)
            finally:
                conn.close()
            return
        except SaslAuthenticationFailed as exc:
            raise SecurityRefused("sasl_password", f"{server} refused {security.sasl_mechanism} authentication "
                                  f"as {security.sasl_username!r} ({exc}); check the user name and password, and "
                                  f"that the broker has {security.sasl_mechanism} credentials for the user") from None
        except UnsupportedSaslMechanismError:
            raise SecurityRefused("sasl_mechanism", f"{server} does not enable {security.sasl_mechanism} on this "
                                  "listener; choose a mechanism the broker's sasl.enabled.mechanisms lists") from None
        except ssl.SSLCertVerificationError as exc:
            if "mismatch" in str(exc) or "hostname" in str(exc.verify_message).lower():
                raise SecurityRefused("ssl_check_hostname", f"{server}: {exc.verify_message}; connect by a name "
                                      "the broker's certificate holds, or turn the name check off") from None
            raise SecurityRefused("ssl_cafile", f"{server}: the broker's certificate is not trusted "
                                  f"({exc.verify_message}); set ssl_cafile to the CA (PEM) that signed it") from None
        except ssl.SSLError as exc:
            raise SecurityRefused("security_protocol", f"TLS handshake with {server} failed ({exc.reason or exc}); "
                                  f"does this listener speak {security.protocol}?") from None
        except (ConnectionResetError, KafkaConnectionError) as exc:
            raise SecurityRefused("security_protocol", f"{server} closed the connection during {stage} "
                                  f"({type(exc).__name__}), as Kafka does when a client's protocol is not the "
                                  f"listener's: does this listener speak {security.protocol}?") from None
        except (OSError, asyncio.TimeoutError, KafkaError):
            continue  # unreachable: try the next server, else leave it to the clients

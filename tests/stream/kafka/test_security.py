"""KafkaSecurity: refused when it cannot work, the same TLS and SASL options for every client
library, and no secret in its repr."""
from __future__ import annotations

import inspect
import ssl
from pathlib import Path

import certifi
import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from kafka import KafkaConsumer, KafkaProducer
from pydantic import SecretStr

from stream.kafka.security import PLAINTEXT, KafkaSecurity, SecurityConfigError

CA = Path(certifi.where())  # any PEM bundle of CA certificates will do


def _sasl_ssl(mechanism: str = "SCRAM-SHA-512", **kwargs) -> KafkaSecurity:
    return KafkaSecurity("SASL_SSL", mechanism, "alice", SecretStr("s3cret-pw"), ssl_cafile=CA, **kwargs)


def test_plaintext_adds_no_option() -> None:
    assert PLAINTEXT == KafkaSecurity()
    assert PLAINTEXT.aiokafka_options() == {} and PLAINTEXT.kafka_python_options() == {}
    assert PLAINTEXT.faust_credentials() is None and PLAINTEXT.ssl_context() is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_options_carry_the_credentials_and_a_verifying_context(mechanism) -> None:
    options = _sasl_ssl(mechanism).aiokafka_options()
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
                       "sasl_plain_username": "alice", "sasl_plain_password": "s3cret-pw"}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_hostname_check_off_still_verifies_the_chain() -> None:
    context = _sasl_ssl(ssl_check_hostname=False).ssl_context()
    assert context is not None and not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_sasl() -> None:
    sasl = KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "alice", SecretStr("pw")).aiokafka_options()
    assert sasl["security_protocol"] == "SASL_PLAINTEXT" and sasl["ssl_context"] is None
    tls = KafkaSecurity("SSL", ssl_cafile=CA).aiokafka_options()
    assert tls["security_protocol"] == "SSL" and set(tls) == {"security_protocol", "ssl_context"}


def test_every_client_library_accepts_the_options() -> None:
    options = set(_sasl_ssl().aiokafka_options())
    for client in (AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient):
        assert options <= set(inspect.signature(client.__init__).parameters), client
    python_options = set(_sasl_ssl().kafka_python_options())
    for client in (KafkaProducer, KafkaConsumer):
        assert python_options <= set(client.DEFAULT_CONFIG), client


def test_faust_credentials_follow_the_protocol_and_mechanism() -> None:
    creds = _sasl_ssl().faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value, creds.username) == ("SASL_SSL", "SCRAM-SHA-512", "alice")
    assert creds.password == "s3cret-pw" and isinstance(creds.ssl_context, ssl.SSLContext)
    plain = KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "alice", SecretStr("pw")).faust_credentials()
    assert plain.protocol.value == "SASL_PLAINTEXT" and plain.ssl_context is None
    assert isinstance(KafkaSecurity("SSL", ssl_cafile=CA).faust_credentials(), faust.SSLCredentials)


def test_no_secret_in_repr_or_description() -> None:
    security = _sasl_ssl()
    assert "s3cret-pw" not in repr(security) and "s3cret-pw" not in security.describe()
    assert security.describe() == "SASL_SSL (SCRAM-SHA-512 as alice)"


@pytest.mark.parametrize(("kwargs", "setting"), [
    ({"protocol": "TLS"}, "security_protocol"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "a", "sasl_password": SecretStr("p")},
     "sasl_mechanism"),
    ({"protocol": "SASL_SSL", "sasl_password": SecretStr("p")}, "sasl_username"),
    ({"protocol": "SASL_PLAINTEXT", "sasl_username": "a"}, "sasl_password"),
    ({"protocol": "SASL_SSL", "sasl_username": "a", "sasl_password": SecretStr("")}, "sasl_password"),
    ({"sasl_username": "a"}, "sasl_username"),  # credentials that PLAINTEXT would ignore
    ({"ssl_cafile": CA}, "ssl_cafile"),  # a CA that PLAINTEXT would ignore
    ({"protocol": "SSL", "ssl_cafile": Path("/no/such/ca.pem")}, "ssl_cafile"),
    ({"protocol": "SSL", "ssl_keyfile": CA}, "ssl_certfile"),
    ({"protocol": "SSL", "ssl_key_password": SecretStr("k")}, "ssl_key_password"),
])
def test_settings_that_cannot_work_are_refused_naming_the_field(kwargs, setting) -> None:
    with pytest.raises(SecurityConfigError) as info:
        KafkaSecurity(**kwargs)
    assert info.value.setting == setting and str(info.value).startswith(setting)


def test_a_ca_file_that_is_not_pem_names_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(SecurityConfigError, match="ssl_cafile"):
        KafkaSecurity("SSL", ssl_cafile=bad).ssl_context()


def test_a_client_certificate_without_its_key_names_the_setting() -> None:
    with pytest.raises(SecurityConfigError) as info:
        KafkaSecurity("SSL", ssl_certfile=CA).ssl_context()  # CA certificates, and no private key
    assert info.value.setting == "ssl_certfile"

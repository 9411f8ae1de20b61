"""The SASL_SSL listener's broker configuration: what Kafka is told, and what logs are not."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from stream.brokers.sasl_ssl import SaslSslListener, redact


@pytest.fixture
def listener(tmp_path: Path) -> SaslSslListener:
    keystore = tmp_path / "broker.p12"
    keystore.write_bytes(b"pkcs12")
    return SaslSslListener(keystore, SecretStr("store-pw"), {"alice": SecretStr("alice-pw"), "bob": SecretStr("b0b")})


def test_clients_get_only_the_sasl_ssl_listener(listener) -> None:
    lines = dict(line.split("=", 1) for line in listener.server_properties("127.0.0.1", 9093, 9094, 9095).splitlines())
    assert lines["advertised.listeners"] == "INTERNAL://127.0.0.1:9094,SASL_SSL://127.0.0.1:9093"
    assert lines["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL"
    assert lines["inter.broker.listener.name"] == "INTERNAL"
    assert lines["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-512"
    assert lines["listener.name.sasl_ssl.ssl.keystore.password"] == "store-pw"
    jaas = lines["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert 'user_alice="alice-pw"' in jaas and 'user_bob="b0b"' in jaas and jaas.endswith(";")


def test_scram_users_are_formatted_in_and_redacted_from_logs(listener) -> None:
    args = listener.storage_format_args()
    assert args == ["--add-scram", "SCRAM-SHA-512=[name=alice,password=alice-pw]",
                    "--add-scram", "SCRAM-SHA-512=[name=bob,password=b0b]"]
    shown = " ".join(redact(["java", "format", "-c", "p", *args]))
    assert "alice-pw" not in shown and shown == "java format -c p --add-scram <redacted> --add-scram <redacted>"


@pytest.mark.parametrize(("users", "match"), [
    ({}, "empty"),
    ({"al ice": SecretStr("pw")}, "user name"),
    ({"alice": SecretStr('pw"; x')}, "password of SASL user 'alice'"),
])
def test_users_that_would_break_the_configuration_are_refused(tmp_path, users, match) -> None:
    keystore = tmp_path / "broker.p12"
    keystore.write_bytes(b"pkcs12")
    with pytest.raises(ValueError, match=match):
        SaslSslListener(keystore, SecretStr("pw"), users)


def test_a_missing_keystore_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="keytool"):
        SaslSslListener(tmp_path / "none.p12", SecretStr("pw"), {"alice": SecretStr("pw")})

"""Every CLI flag has an environment twin; flags win over the environment, which wins over defaults;
security settings are checked up front and keep their secrets out of every rendering."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from workers.runtime.settings import (IngestSettings, ScoreSettings, SettingsError, add_settings_arguments,
                                      settings_from_args)


def _parse(cls, argv):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, cls)
    return settings_from_args(cls, parser.parse_args(argv))


def test_defaults(monkeypatch):
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "GNNREC_BATCH_MAX", "GNNREC_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(var, raising=False)
    s = _parse(IngestSettings, [])
    assert s.batch_max == 5000 and s.bootstrap_servers is None and s.metrics_port == 9101
    assert _parse(ScoreSettings, []).store == "memory"


def test_env_twin_and_flag_precedence(monkeypatch):
    monkeypatch.setenv("GNNREC_BATCH_MAX", "123")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1234")
    s = _parse(IngestSettings, [])
    assert s.batch_max == 123 and s.bootstrap_servers == "127.0.0.1:1234"
    s = _parse(IngestSettings, ["--batch-max", "7", "--bootstrap-servers", "h:1"])
    assert s.batch_max == 7 and s.bootstrap_servers == "h:1"


def test_replication_factor_reaches_the_topics_and_idempotence_parses_from_the_environment(monkeypatch):
    monkeypatch.setenv("GNNREC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("GNNREC_IDEMPOTENT_PRODUCERS", "true")
    s = _parse(ScoreSettings, [])
    assert s.topics().replication == 3 and s.idempotent_producers is True
    monkeypatch.delenv("GNNREC_REPLICATION_FACTOR")
    monkeypatch.delenv("GNNREC_IDEMPOTENT_PRODUCERS")
    s = _parse(IngestSettings, [])
    assert s.topics().replication == 1 and s.idempotent_producers is False  # the embedded single broker


def test_every_field_has_a_flag():
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, ScoreSettings)
    flags = {a.dest for a in parser._actions}
    assert set(ScoreSettings.model_fields) <= flags


def test_settings_are_frozen_and_validated():
    s = IngestSettings()
    with pytest.raises(ValidationError):
        s.batch_max = 3
    with pytest.raises(ValidationError):
        IngestSettings(batch_max=0)
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS"):
        IngestSettings(bootstrap_servers=None).require_bootstrap()


SECURITY_VARS = ("GNNREC_SECURITY_PROTOCOL", "KAFKA_SECURITY_PROTOCOL", "GNNREC_SASL_MECHANISM", "KAFKA_SASL_MECHANISM",
                 "GNNREC_SASL_USERNAME", "KAFKA_SASL_USERNAME", "GNNREC_SASL_PASSWORD", "KAFKA_SASL_PASSWORD",
                 "GNNREC_SSL_CAFILE", "GNNREC_SSL_CERTFILE", "GNNREC_SSL_KEYFILE", "GNNREC_SSL_KEY_PASSWORD",
                 "GNNREC_SSL_CHECK_HOSTNAME")


@pytest.fixture
def no_security_env(monkeypatch):
    for var in SECURITY_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_security_defaults_to_plaintext(no_security_env):
    security = _parse(IngestSettings, []).kafka_security()
    assert security.protocol == "PLAINTEXT" and security.aiokafka_options() == {}


def test_security_from_the_environment_only(no_security_env, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-")
    for var, value in {"GNNREC_SECURITY_PROTOCOL": "SASL_SSL", "GNNREC_SASL_MECHANISM": "SCRAM-SHA-512",
                       "GNNREC_SASL_USERNAME": "alice", "GNNREC_SASL_PASSWORD": "pw-from-env",
                       "GNNREC_SSL_CAFILE": str(ca), "GNNREC_SSL_CHECK_HOSTNAME": "false"}.items():
        no_security_env.setenv(var, value)
    security = _parse(ScoreSettings, []).kafka_security()
    assert (security.protocol, security.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert security.sasl_username == "alice"
    assert security.sasl_password.get_secret_value() == "pw-from-env"
    assert security.ssl_cafile == ca and security.ssl_check_hostname is False
    assert _parse(ScoreSettings, ["--sasl-username", "bob"]).sasl_username == "bob"  # the flag wins


def test_security_accepts_the_conventional_kafka_variables(no_security_env):
    for var, value in {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
                       "KAFKA_SASL_USERNAME": "alice", "KAFKA_SASL_PASSWORD": "pw"}.items():
        no_security_env.setenv(var, value)
    assert _parse(IngestSettings, []).kafka_security().describe() == "SASL_PLAINTEXT (PLAIN as alice)"
    no_security_env.setenv("GNNREC_SASL_USERNAME", "gnnrec-user")  # the project's own name comes first
    assert _parse(IngestSettings, []).sasl_username == "gnnrec-user"


def test_secrets_stay_out_of_repr_help_and_errors(no_security_env, tmp_path):
    no_security_env.setenv("GNNREC_SASL_PASSWORD", "hunter2-secret")
    no_security_env.setenv("GNNREC_SSL_KEY_PASSWORD", "key-secret-9")
    no_security_env.setenv("GNNREC_SECURITY_PROTOCOL", "SASL_SSL")
    no_security_env.setenv("GNNREC_SASL_USERNAME", "alice")
    settings = IngestSettings(ssl_certfile=Path(__file__), ssl_keyfile=Path(__file__))
    shown = repr(settings) + str(settings) + repr(settings.kafka_security()) + str(settings.model_dump())
    assert "hunter2-secret" not in shown and "key-secret-9" not in shown
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, IngestSettings)
    assert "hunter2-secret" not in parser.format_help()
    with pytest.raises(ValidationError) as info:
        IngestSettings(ssl_cafile=tmp_path / "missing.pem")
    assert "hunter2-secret" not in str(info.value)


def test_sasl_needs_a_user_and_password_named_by_flag(no_security_env):
    with pytest.raises(SettingsError, match=r"--sasl-username \(env GNNREC_SASL_USERNAME / KAFKA_SASL_USERNAME\)"):
        _parse(IngestSettings, ["--security-protocol", "SASL_SSL"])
    with pytest.raises(SettingsError, match=r"--sasl-password \(env GNNREC_SASL_PASSWORD / KAFKA_SASL_PASSWORD\)"):
        _parse(IngestSettings, ["--security-protocol", "SASL_SSL", "--sasl-username", "alice"])
    with pytest.raises(SettingsError, match="does not use SASL"):
        _parse(IngestSettings, ["--sasl-username", "alice"])


def test_ssl_files_must_exist_named_by_flag(no_security_env, tmp_path):
    missing = tmp_path / "ca.pem"
    with pytest.raises(SettingsError, match=r"--ssl-cafile \(env GNNREC_SSL_CAFILE\): .*ca.pem does not exist"):
        _parse(IngestSettings, ["--security-protocol", "SSL", "--ssl-cafile", str(missing)])
    with pytest.raises(SettingsError, match=r"--ssl-keyfile \(env GNNREC_SSL_KEYFILE\)"):
        _parse(IngestSettings, ["--security-protocol", "SSL", "--ssl-keyfile", str(missing)])


def test_invalid_flags_are_one_settings_error_naming_each(no_security_env):
    with pytest.raises(SettingsError, match=r"--batch-max \(env GNNREC_BATCH_MAX\): Input should be greater"):
        _parse(IngestSettings, ["--batch-max", "0"])
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, IngestSettings)
    help_text = parser.format_help()
    assert "GNNREC_SECURITY_PROTOCOL / KAFKA_SECURITY_PROTOCOL" in help_text and "SCRAM-SHA-512" in help_text


TRANSPORT_VARS = ("GNNREC_TRANSPORT", "GNNREC_MODEL_DIR", "GNNREC_EMBEDDINGS_DIR", "GNNREC_RECOMMENDER", "GNNREC_DATA_DIR")


@pytest.fixture
def no_transport_env(monkeypatch):
    for var in TRANSPORT_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_without_shared_directories_bundles_and_embeddings_travel_on_topics(no_transport_env):
    """A worker on another machine needs only the broker and its own data dir: under auto its
    copies of the bundles and embeddings live there."""
    from workers.runtime.settings import RefreshSettings, TrainSettings
    train = _parse(TrainSettings, ["--data-dir", "/d/train"])
    assert train.transport == "kafka" and train.model_dir == Path("/d/train/models")
    no_transport_env.setenv("GNNREC_DATA_DIR", "/d/refresh")  # the environment twin counts as given
    refresh = _parse(RefreshSettings, [])
    assert (refresh.transport, refresh.model_dir, refresh.embeddings_dir) == (
        "kafka", Path("/d/refresh/models"), Path("/d/refresh/embeddings"))
    score = _parse(ScoreSettings, ["--recommender", "gnn", "--data-dir", "/d/score"])
    assert score.use_gnn() and (score.model_dir, score.embeddings_dir) == (Path("/d/score/models"),
                                                                          Path("/d/score/embeddings"))
    assert _parse(ScoreSettings, ["--transport", "kafka"]).use_gnn()
    baseline = _parse(ScoreSettings, [])  # auto, nothing given: baselines, nothing to mirror
    assert not baseline.use_gnn() and baseline.model_dir is None
    assert _parse(ScoreSettings, ["--recommender", "transitions", "--transport", "kafka"]).model_dir is None


def test_a_shared_directory_keeps_the_local_transport(no_transport_env):
    from workers.runtime.settings import RefreshSettings, TrainSettings
    no_transport_env.setenv("GNNREC_MODEL_DIR", "/shared/models")
    assert _parse(TrainSettings, []).transport == "local"
    refresh = _parse(RefreshSettings, [])
    assert (refresh.transport, refresh.embeddings_dir) == ("local", Path("data/embeddings"))
    score = _parse(ScoreSettings, ["--embeddings-dir", "/shared/emb"])
    assert score.transport == "local" and score.use_gnn()
    no_transport_env.delenv("GNNREC_MODEL_DIR")
    local = _parse(RefreshSettings, ["--transport", "local"])  # today's one-machine defaults
    assert (local.model_dir, local.embeddings_dir) == (Path("data/models"), Path("data/embeddings"))
    with pytest.raises(SettingsError, match="--transport local needs --model-dir"):
        _parse(ScoreSettings, ["--recommender", "gnn", "--transport", "local"])

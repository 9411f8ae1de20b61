"""Every CLI flag has an environment twin; flags win over the environment, which wins over defaults."""
from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from workers.runtime.settings import IngestSettings, ScoreSettings, add_settings_arguments, settings_from_args


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

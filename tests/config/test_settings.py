"""Settings: only the environment's TIERGATE_* names the settings know."""

import pytest
from pydantic import ValidationError

from tiergate.settings import Settings, is_loopback


def test_a_mistyped_variable_is_refused_with_the_nearest_name(monkeypatch):
    monkeypatch.setenv("TIERGATE_MASTR_KEY", "x")
    with pytest.raises(ValidationError, match="TIERGATE_MASTR_KEY .did you mean TIERGATE_MASTER_KEY"):
        Settings()


def test_known_and_foreign_variables_are_accepted(monkeypatch, tmp_path):
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TIERGATE_EDGE_POLICY", "prefer-cloud")   # the edge agent's own settings
    monkeypatch.setenv("TIERGATE_CLOUD_KEY", "sk-tg-x")
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    s = Settings()
    assert s.data_dir == tmp_path and s.snapstart and not s.in_lambda


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")

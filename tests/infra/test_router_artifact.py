"""The learned-router artifact ships in the function asset: synth refuses a missing or
oversized one, and the functions get its path (TIERGATE_ROUTER_ARTIFACT)."""

from __future__ import annotations

import pytest

from infra.stacks.gateway import MAX_ARTIFACT_BYTES, router_artifact_path


def test_the_artifact_must_be_in_the_code_asset(tmp_path):
    code = tmp_path / "functions"
    (code / "router").mkdir(parents=True)
    with pytest.raises(ValueError, match="no artifact"):
        router_artifact_path(code, "router")
    (code / "router" / "manifest.json").write_text("{}")
    assert router_artifact_path(code, "router") == "/var/task/router"
    assert router_artifact_path(code, "./router/") == "/var/task/router"
    with pytest.raises(ValueError, match="inside the code asset"):
        router_artifact_path(code, "../elsewhere")
    (code / "router" / "router.json").write_bytes(b"0" * (MAX_ARTIFACT_BYTES + 1))
    with pytest.raises(ValueError, match="budget"):
        router_artifact_path(code, "router")


def test_the_functions_load_it_from_the_environment(tmp_path, monkeypatch):
    from tests.support import routing_data
    from tiergate.compose import learned_routing
    from tiergate.config.catalog import parse
    from tiergate.settings import Settings

    art = routing_data.train_artifact(tmp_path)
    monkeypatch.setenv("TIERGATE_ROUTER_ARTIFACT", str(art))
    cat = parse(routing_data.CATALOG.replace("{sim}", "http://127.0.0.1:9/v1"), source="t")
    learned = learned_routing(cat, Settings())
    assert learned is not None and learned.current().models == ("strong", "weak")

"""Learned routing end to end: ``tiergate router train`` -> a catalog naming the artifact
-> the gateway under uvicorn -> ``POST /v1/route`` and chat completions through the
official SDK; the quality-target header; bad artifacts at startup and in ``config
check``; hot reload of a new artifact."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import routing_data
from tiergate.cli import main as cli
from tiergate.compose import build_app
from tiergate.config import catalog as catalog_mod
from tiergate.config.catalog import CatalogError
from tiergate.routing.learned import serving
from tiergate.settings import Settings

HARD = "Prove rigorously that there are infinitely many primes of the form 4n+1."
EASY = "Say hello to Ana in a friendly way."


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("learned")
    data = routing_data.write(d / "train.jsonl", 600)
    cat = d / "catalog.yaml"
    cat.write_text(routing_data.CATALOG.replace("{sim}", "http://127.0.0.1:9/v1"))
    assert cli(["router", "train", str(data), "--config", str(cat), "--out", str(d / "artifact")]) == 0
    return d / "artifact"


def _catalog(artifact: Path, extra: str = "") -> str:
    return routing_data.CATALOG + f"""
routing:
  learned: {{path: "{artifact}", quality_target: 0.95{extra}}}
"""


def _route(client: openai.OpenAI, content: str, **headers: str) -> dict:
    return client.post("/route", body={"model": "auto", "messages": [{"role": "user", "content": content}]},
                       cast_to=object, options={"headers": headers})


def test_train_serve_route_through_the_sdk(gateway_factory, trained, sim):
    base, _ = gateway_factory(_catalog(trained))
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    hard, easy = _route(client, HARD), _route(client, EASY)
    for d in (hard, easy):
        r = d["router"]
        assert r["kind"] == "learned" and r["target"] == 0.95
        assert set(r["predicted_quality"]) == {"weak", "strong"}  # "other" is not in the artifact
        assert d["candidates"][0]["model"] == r["chosen"]
    assert hard["router"]["chosen"] == "strong" and easy["router"]["chosen"] == "weak"
    assert hard["router"]["predicted_quality"]["weak"] < easy["router"]["predicted_quality"]["weak"]
    assert "predicted quality" in hard["reason"]
    assert sim.requests() == []  # a dry run calls no model

    for content, model in ((HARD, "strong"), (EASY, "weak")):
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": content}])
        assert raw.headers["x-tiergate-model"] == model
        assert "auto (learned" in raw.headers["x-tiergate-route-reason"]
        assert raw.parse().choices[0].message.content


def test_quality_target_header_only_tightens(gateway_factory, trained):
    base, _ = gateway_factory(_catalog(trained))
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    strict = _route(client, EASY, **{"x-tiergate-quality-target": "1.0"})
    assert strict["router"]["target"] == 1.0 and strict["router"]["chosen"] == "strong"
    loose = _route(client, EASY, **{"x-tiergate-quality-target": "0.5"})
    assert loose["router"]["target"] == 0.95  # a request may tighten the target, never loosen it
    with pytest.raises(openai.BadRequestError) as e:
        _route(client, EASY, **{"x-tiergate-quality-target": "high"})
    assert e.value.body["param"] == "x-tiergate-quality-target"
    in_body = client.post("/route", cast_to=object, body={
        "model": "auto", "quality_target": 1.0, "messages": [{"role": "user", "content": EASY}]})
    assert in_body["router"]["target"] == 1.0 and in_body["router"]["chosen"] == "strong"


def test_plans_the_rules_made_carry_a_rules_router_block(gateway_factory, trained):
    # tier:N is the rules' decision (and "other" is unknown to the artifact anyway).
    base, _ = gateway_factory(_catalog(trained))
    d = httpx.post(base + "/v1/route", json={"model": "tier:2", "messages": [{"role": "user", "content": HARD}]}).json()
    assert d["router"]["kind"] == "rules" and d["router"]["chosen"] == "other"


def _break(art: Path, how: str) -> None:
    if how == "missing":
        shutil.rmtree(art)
    elif how == "corrupt":
        p = art / "router.json"
        p.write_text(p.read_text()[:-200])
    elif how == "bad-json":
        (art / "manifest.json").write_text("{not json")


@pytest.mark.parametrize("how, message", [
    ("missing", "no such directory"),
    ("corrupt", "does not match its hash"),
    ("bad-json", "not valid JSON"),
])
def test_bad_artifacts_are_refused_at_startup_and_by_config_check(tmp_path, trained, how, message, capsys):
    art = tmp_path / "artifact"
    shutil.copytree(trained, art)
    _break(art, how)
    cat_file = tmp_path / "catalog.yaml"
    cat_file.write_text(_catalog(art))
    with pytest.raises(CatalogError, match=message):
        build_app(Settings(data_dir=tmp_path / "data", store="memory"), catalog_mod.load(cat_file))
    assert cli(["config", "check", str(cat_file)]) == 1
    assert message in capsys.readouterr().err


def test_an_artifact_naming_unknown_models_is_refused(tmp_path, trained, capsys):
    cat_file = tmp_path / "catalog.yaml"
    cat_file.write_text(_catalog(trained).replace("name: weak", "name: cheap"))
    with pytest.raises(CatalogError, match="names models not in the catalog: weak"):
        build_app(Settings(data_dir=tmp_path / "data", store="memory"), catalog_mod.load(cat_file))
    assert cli(["config", "check", str(cat_file)]) == 1
    assert "weak" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(_catalog(trained))
    assert cli(["config", "check", str(good)]) == 0
    assert "router artifact" in capsys.readouterr().out


def test_a_new_artifact_is_picked_up_without_restart(gateway_factory, trained, tmp_path, monkeypatch):
    monkeypatch.setattr(serving, "RELOAD_CHECK_S", 0.0)
    art = tmp_path / "live"
    shutil.copytree(trained, art)
    base, _ = gateway_factory(_catalog(art))
    first = httpx.post(base + "/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": EASY}]})
    old_id = first.json()["router"]["artifact"]

    # A broken replacement is logged and ignored: requests keep being answered.
    (art / "manifest.json").write_text("{half written")
    r = httpx.post(base + "/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": EASY}]})
    assert r.status_code == 200 and r.json()["router"]["artifact"] == old_id

    # A new artifact (trained on other data) replaces it once its manifest lands.
    data = routing_data.write(tmp_path / "other.jsonl", 300, seed=99)
    cat = tmp_path / "c.yaml"
    cat.write_text(routing_data.CATALOG.replace("{sim}", "http://127.0.0.1:9/v1"))
    assert cli(["router", "train", str(data), "--config", str(cat), "--out", str(tmp_path / "next")]) == 0
    for name in ("router.json", "scorer.json", "manifest.json"):  # the manifest last, as `train` writes it
        shutil.copy(tmp_path / "next" / name, art / name)
    new_id = json.loads((art / "manifest.json").read_text())["id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        d = httpx.post(base + "/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": EASY}]})
        if d.json()["router"]["artifact"] == new_id:
            break
        time.sleep(0.05)
    assert d.json()["router"]["artifact"] == new_id != old_id

"""``POST /v1/feedback`` over a real SQLite store: stored exactly once, refused across
tenants, accepted from the master key, visible in ``tiergate router export``; cascade
step scores become labels; export -> train round trip."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest

from tests.support import routing_data
from tests.support.gateway import serve_app
from tiergate.cli import main as cli
from tiergate.compose import build_app
from tiergate.config import catalog as catalog_mod
from tiergate.limits.admission import Principal
from tiergate.routing.learned import labels
from tiergate.settings import Settings
from tiergate.stores.sqlite import SqliteStore

MASTER = "sk-master-test"
ASK = [{"role": "user", "content": "What is the capital of Peru?"}]


@pytest.fixture
def gw(tmp_path, sim, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(data))
    text = (routing_data.CATALOG + "\nrouting:\n  learned: {collect_prompts: true}\n").replace("{sim}", sim.openai_base)
    app = build_app(Settings(data_dir=data, store="sqlite", master_key=MASTER), catalog_mod.parse(text, source="t"))
    with serve_app(app) as base:
        yield base


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "data" / "tiergate.sqlite3"


def _key(base: str, tenant: str) -> str:
    r = httpx.post(base + "/v1/keys", json={"tenant": tenant}, headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code == 201, r.text
    return r.json()["key"]


def _chat(base: str, key: str, model: str = "weak") -> str:
    r = httpx.post(base + "/v1/chat/completions", json={"model": model, "messages": ASK},
                   headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def _feedback(base: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(base + "/v1/feedback", json=body, headers={"authorization": f"Bearer {key}"})


def test_feedback_is_stored_once_and_only_from_its_owner(gw, tmp_path):
    acme, acme2, other = _key(gw, "acme"), _key(gw, "acme"), _key(gw, "globex")
    rid = _chat(gw, acme)

    refused = _feedback(gw, other, {"request_id": rid, "score": 1.0})
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "request_id"
    assert _feedback(gw, acme, {"request_id": "chatcmpl-tg-nope", "score": 1}).status_code == 404
    assert _feedback(gw, acme, {"request_id": rid}).status_code == 400  # neither score nor thumbs

    ok = _feedback(gw, acme2, {"request_id": rid, "thumbs": "down", "comment": "wrong city"})  # same tenant
    assert ok.status_code == 201 and ok.json()["score"] == 0.0 and ok.json()["model"] == "weak"
    again = _feedback(gw, acme, {"request_id": rid, "score": 1.0})
    assert again.status_code == 409

    rid2 = _chat(gw, other, model="strong")
    assert _feedback(gw, MASTER, {"request_id": rid2, "score": 0.9}).status_code == 201

    # Labels stay out of the usage ledger.
    usage = httpx.get(gw + "/v1/usage?period=all", headers={"authorization": f"Bearer {MASTER}"}).json()
    assert {r["request_id"] for r in usage["data"]} == {rid, rid2}

    out = tmp_path / "labels.jsonl"
    assert cli(["router", "export", "--out", str(out)]) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows[rid]["outcomes"] == {"weak": 0.0} and rows[rid]["label_source"] == {"weak": "feedback"}
    assert rows[rid]["messages"] == ASK and rows[rid]["tenant"] == "acme"
    assert rows[rid2]["outcomes"] == {"strong": 0.9}
    assert cli(["router", "export", "--tenant", "globex", "--out", str(out)]) == 0
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [rid2]


async def test_cascade_step_scores_are_labels(gw, db, sim):
    sim.script("weak-1", {"content": ""})  # empty: scored 0, escalated
    r = httpx.post(gw + "/v1/chat/completions", json={"model": "cascade", "messages": ASK},
                   headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    store = SqliteStore(db)
    try:
        rows = {x["id"]: x for x in await labels.export(store)}
    finally:
        await store.aclose()
    assert rows[rid]["outcomes"]["weak"] == 0.0 and rows[rid]["label_source"]["weak"] == "cascade"
    assert len(rows[rid]["outcomes"]) >= 2


async def test_export_then_train_round_trip(tmp_path):
    store = SqliteStore(tmp_path / "labels.sqlite3")
    log = labels.LabelLog(store, collect_prompts=True)
    ex = [routing_data.example(random.Random(i)) for i in range(120)]
    try:
        for i, row in enumerate(ex):
            steps = [{"model": m, "score": q, "reasons": [], "purpose": "answer"} for m, q in row["outcomes"].items()]
            await log.record(f"r{i}", Principal("key_a", "acme"), model="strong", deployment="strong", tier=3,
                             messages=row["messages"], steps=steps)
        rows = await labels.export(store)
    finally:
        await store.aclose()
    assert len(rows) == 120 and all(set(r["outcomes"]) == {"weak", "strong"} for r in rows)
    data = tmp_path / "exported.jsonl"
    labels.write_jsonl(data, rows)
    cat = tmp_path / "catalog.yaml"
    cat.write_text(routing_data.CATALOG.replace("{sim}", "http://127.0.0.1:9/v1"))
    assert cli(["router", "train", str(data), "--config", str(cat), "--out", str(tmp_path / "art")]) == 0
    man = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert man["models"] == ["strong", "weak"] and man["training"]["examples"] == 120

"""Cascades scored by the artifact's trained scorer: accept and escalate follow its
prediction and the calibrated threshold, hard failures still cap the score, the dry run
reports the same decision; ``model: "cascade"`` works on a catalog without ``cascades:``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import routing_data

ASK = [{"role": "user", "content": "Compute the definite integral of sin(x)^3 over 0 to pi."}]
CONFIDENT = "Therefore the answer is 4/3."
HEDGING = "I think maybe it is 4/3, not sure. Perhaps it might be different."


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return routing_data.train_artifact(tmp_path_factory.mktemp("scorer"))


@pytest.fixture
def gw(gateway_factory, artifact):
    return gateway_factory(routing_data.learned_catalog(artifact))[0]


def _cascade(base: str) -> httpx.Response:
    r = httpx.post(base + "/v1/chat/completions", json={"model": "cascade", "messages": ASK}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def test_a_catalog_without_cascades_has_the_default_policy(gateway_factory, sim):
    base, _ = gateway_factory(routing_data.CATALOG)
    r = _cascade(base)
    assert r.json()["tiergate_cascade"]["policy"] == "default"
    assert [s["target"] for s in r.json()["tiergate_cascade"]["steps"]][0] == "tier:1"


def test_the_scorer_accepts_a_good_cheap_answer(gw, sim):
    sim.script("weak-1", {"content": CONFIDENT})
    c = _cascade(gw).json()["tiergate_cascade"]
    first = c["steps"][0]
    assert first["model"] == "weak" and first["status"] == "accepted"
    assert any(r.startswith("learned:") for r in first["reasons"])
    assert len(c["steps"]) == 1 and c["final"]["model"] == "weak"


def test_the_scorer_escalates_a_weak_cheap_answer(gw, sim):
    sim.script("weak-1", {"content": HEDGING})
    sim.script("other-2", {"content": HEDGING})
    sim.script("strong-3", {"content": CONFIDENT})
    c = _cascade(gw).json()["tiergate_cascade"]
    assert [s["status"] for s in c["steps"]] == ["rejected", "rejected", "accepted"]
    assert c["steps"][0]["score"] < c["steps"][2]["score"]
    assert c["final"]["model"] == "strong"


def test_hard_failures_still_cap_the_learned_score(gw, sim):
    sim.script("weak-1", {"content": ""})
    sim.script("other-2", {"content": CONFIDENT})
    c = _cascade(gw).json()["tiergate_cascade"]
    first = c["steps"][0]
    assert first["status"] == "rejected" and first["score"] == 0.0 and "empty" in first["reasons"]
    assert not any(r.startswith("learned:") for r in first["reasons"])


@pytest.mark.parametrize("draft, action", [(CONFIDENT, "accept"), (HEDGING, "escalate")])
def test_the_dry_run_scores_a_draft_with_the_scorer(gw, sim, draft, action):
    d = httpx.post(gw + "/v1/route", json={"model": "cascade", "messages": ASK, "draft": draft}).json()["draft"]
    assert d["scorer"] == "learned" and d["draft_model"] == "weak"
    assert d["decision"]["action"] == action
    assert (d["score"] >= d["threshold"]) == (action == "accept")
    assert sim.requests() == []

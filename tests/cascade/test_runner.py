"""Cascades through the real gateway: openai SDK -> uvicorn -> Router/Executor -> simulator."""

from __future__ import annotations

import httpx
import pytest

from tests.cascade.conftest import BROKEN_PY, CODE_ASK, GOOD_PY
from tiergate.compose import build_services
from tiergate.errors import BudgetExceeded
from tiergate.limits.admission import Principal
from tiergate.limits.master_key import MasterKeyAdmission
from tiergate.request import GatewayRequest


def chat(client, model, messages=CODE_ASK, **kw):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, **kw)
    return raw, raw.parse()


def test_good_cheap_answer_stops_at_tier_0(gw_client, sim):
    client, _, _ = gw_client
    sim.script("small-0", {"content": GOOD_PY})
    raw, r = chat(client, "cascade")
    ext = r.model_extra["tiergate_cascade"]
    assert [s["status"] for s in ext["steps"]] == ["accepted"]
    assert r.model == "small" and raw.headers["x-tiergate-tier"] == "0"
    assert raw.headers["x-tiergate-cascade"].startswith("escalate;0:small=1.00:accepted")
    assert sim.requests(model="mid-1") == [] and sim.requests(model="big-2") == []


@pytest.mark.parametrize("weak", [
    {"content": ""},
    {"content": "def add(a, b):\n    return", "finish_reason": "length"},
    {"content": BROKEN_PY},
])
def test_weak_cheap_answer_escalates(gw_client, sim, weak):
    client, _, _ = gw_client
    sim.script("small-0", weak)
    sim.script("mid-1", {"content": GOOD_PY})
    raw, r = chat(client, "cascade:default")
    ext = r.model_extra["tiergate_cascade"]
    assert [(s["model"], s["status"]) for s in ext["steps"]] == [("small", "rejected"), ("mid", "accepted")]
    assert r.choices[0].message.content == GOOD_PY
    # usage sums both calls; cost is the sum of both steps
    assert r.usage.model_extra["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in ext["steps"]))
    assert float(raw.headers["x-tiergate-cost-usd"]) == pytest.approx(ext["cost_usd"], abs=1e-9)
    assert len(sim.requests(model="small-0")) == 1 and len(sim.requests(model="mid-1")) == 1


def test_invalid_json_escalates(gw_client, sim):
    client, _, _ = gw_client
    sim.script("small-0", {"content": "name: bob"})
    _, r = chat(client, "cascade", messages=[{"role": "user", "content": "the user"}],
                response_format={"type": "json_object"})
    steps = r.model_extra["tiergate_cascade"]["steps"]
    assert steps[0]["reasons"] == ["invalid_json"] and steps[1]["status"] == "accepted"


def test_cost_ceiling_stops_before_the_top_tier(gw_client, sim):
    client, _, _ = gw_client
    sim.script("small-0", {"content": BROKEN_PY})
    sim.script("mid-1", {"content": BROKEN_PY})
    _, r = chat(client, "cascade:capped")
    ext = r.model_extra["tiergate_cascade"]
    assert [s["status"] for s in ext["steps"]] == ["rejected", "rejected", "skipped:ceiling"]
    assert "ceiling" in ext["stop_reason"] and sim.requests(model="big-2") == []


def test_refine_sends_the_draft_to_the_stronger_model(gw_client, sim):
    client, _, _ = gw_client
    sim.script("small-0", {"content": BROKEN_PY})
    sim.script("big-2", {"content": GOOD_PY})
    _, r = chat(client, "cascade:refine")
    (req,) = sim.requests(model="big-2")
    assert BROKEN_PY in req["body"]["messages"][-1]["content"]
    assert r.choices[0].message.content == GOOD_PY
    assert [s["purpose"] for s in r.model_extra["tiergate_cascade"]["steps"]] == ["answer", "refine"]


def test_parallel_cancels_the_slow_losers(gw_client, sim):
    client, _, _ = gw_client
    sim.script("small-0", {"content": GOOD_PY})
    sim.script("mid-1", {"content": GOOD_PY, "delay_ms": 3000})
    sim.script("big-2", {"content": GOOD_PY, "delay_ms": 3000})
    _, r = chat(client, "cascade:fan")
    statuses = {s["model"] or s["target"]: s["status"] for s in r.model_extra["tiergate_cascade"]["steps"]}
    assert statuses == {"small": "accepted", "tier:1": "cancelled", "tier:2": "cancelled"}


def test_auto_routing_uses_the_catalog_cascade(gw_client, sim):
    client, _, _ = gw_client
    sim.script("small-0", {"content": BROKEN_PY})
    sim.script("mid-1", {"content": GOOD_PY})
    raw, r = chat(client, "auto")
    assert r.model_extra["tiergate_cascade"]["policy"] == "default" and r.model == "mid"
    assert "cascade 'default'" in raw.headers["x-tiergate-route-reason"]


def test_streaming_cascade_returns_the_final_answer(gw_client, sim):
    client, _, _ = gw_client
    sim.script("small-0", {"content": ""})
    sim.script("mid-1", {"content": GOOD_PY})
    text = "".join(c.choices[0].delta.content or "" for c in
                   client.chat.completions.create(model="cascade", messages=CODE_ASK, stream=True) if c.choices)
    assert text == GOOD_PY


def test_judge_verdict_is_part_of_the_score(gw_client, sim):
    client, _, _ = gw_client
    sim.script("small-0", {"content": "Paris."})
    sim.script("big-2", [{"content": "2"}, {"content": "9"}])  # verdicts for tier 0, then tier 1
    sim.script("mid-1", {"content": "Paris is the capital of France."})
    _, r = chat(client, "cascade:judged", messages=[{"role": "user", "content": "Capital of France?"}])
    steps = r.model_extra["tiergate_cascade"]["steps"]
    assert "judge:2/10" in steps[0]["reasons"] and steps[0]["score"] == pytest.approx(0.6)
    assert "judge:9/10" in steps[1]["reasons"] and steps[1]["status"] == "accepted"
    assert "Paris." in sim.requests(model="big-2")[0]["body"]["messages"][0]["content"]


def test_draft_dry_run_matches_the_engine(gw_client, sim):
    client, url, _ = gw_client
    for draft, engine_steps in ((BROKEN_PY, 2), (GOOD_PY, 1)):
        dry = httpx.post(f"{url}/v1/route", json={"model": "cascade", "messages": CODE_ASK,
                                                  "draft": {"role": "assistant", "content": draft}}).json()
        assert sim.requests() == []  # no model was called
        sim.script("small-0", {"content": draft})
        sim.script("mid-1", {"content": GOOD_PY})
        _, r = chat(client, "cascade")
        first = r.model_extra["tiergate_cascade"]["steps"][0]
        assert dry["draft"]["score"] == first["score"] and dry["draft"]["reasons"] == first["reasons"]
        action = dry["draft"]["decision"]["action"]
        assert (action, len(r.model_extra["tiergate_cascade"]["steps"])) == \
            ({2: "escalate", 1: "accept"}[engine_steps], engine_steps)
        if action == "escalate":
            assert dry["draft"]["decision"]["next_target"] == "tier:1"
        sim.reset()


def test_route_rejects_a_bad_draft(gw_client):
    _, url, _ = gw_client
    r = httpx.post(f"{url}/v1/route", json={"model": "cascade", "messages": CODE_ASK, "draft": 42})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


class _Tight(MasterKeyAdmission):
    """Real MasterKeyAdmission plus a hard budget: the budget check the store does, in memory."""

    def __init__(self, limit):
        super().__init__(None)
        self.left, self.tickets = limit, []

    async def admit(self, principal, req):
        if req.estimate_usd > self.left:
            raise BudgetExceeded("over budget")
        self.left -= req.estimate_usd
        t = await super().admit(principal, req)
        self.tickets.append(req.cascade_step)
        return t

    async def settle(self, ticket, outcome):
        self.left += ticket.reserved_usd - outcome.cost_usd
        await super().settle(ticket, outcome)


async def test_budget_that_cannot_cover_a_step_returns_the_best_so_far(sim_catalog, sim, tmp_path):
    from tiergate.settings import Settings

    sim.script("small-0", {"content": BROKEN_PY})
    tight = _Tight(limit=0.0002)  # covers tier 0 (~$0.00004), not tier 1 (~$0.0004)
    services = build_services(Settings(data_dir=tmp_path, store="memory"), sim_catalog, admission=tight)
    body = {"model": "cascade", "messages": CODE_ASK, "max_tokens": 100}
    req = GatewayRequest.from_chat(body, aliases={}, default_model="auto")
    r = await services.cascades.run(req, Principal(key_id="k"), policy_name="default", request_id="t")
    assert [s["status"] for s in r.steps] == ["rejected", "skipped:budget"]
    assert tight.tickets == [0] and len(tight.ledger.query()) == 1
    await services.registry.aclose()

"""The Router as a pure function of the request, the catalog and injected views
(availability, circuits, seeded randomness): no server, no network."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tiergate.config import catalog as catalog_mod
from tiergate.errors import (
    ContextWindowExceeded,
    InvalidRequest,
    ModelNotFound,
    NoRouteAvailable,
    PermissionDenied,
    PriceUnknown,
)
from tiergate.limits.admission import Principal
from tiergate.request import GatewayRequest
from tiergate.routing.plan import Router

CATALOG = """
models:
  - {name: local, model: openai/l, adapter: openai-compatible, tier: 0, api_base: "http://x", context_window: 1000,
     capabilities: [json]}
  - {name: fast, model: openai/f1, adapter: openai-compatible, tier: 1, api_base: "http://x", weight: 3,
     capabilities: [json]}
  - {name: fast, model: openai/f2, adapter: openai-compatible, tier: 1, api_base: "http://x", weight: 1,
     capabilities: [json]}
  - {name: mid, model: openai/m, adapter: openai-compatible, tier: 2, api_base: "http://x"}
  - {name: top, model: openai/t, adapter: openai-compatible, tier: 3, api_base: "http://x",
     capabilities: [tools, json, vision]}
aliases: {writer: mid}
routing: {fallback_up_tiers: 1}
"""
ME = Principal(key_id="k", is_master=True)


@pytest.fixture
def cat():
    return catalog_mod.parse(CATALOG, source="t")


def req(cat, model="auto", content="What is the capital of France?", **body):
    b = {"model": model, "messages": [{"role": "user", "content": content}], **body}
    return GatewayRequest.from_chat(b, aliases=cat.aliases, default_model="auto", keywords=cat.routing.keywords)


def test_tier_plan_has_the_fallback_chain_up_one_tier(cat):
    plan = Router(cat, rng=random.Random(1)).plan(req(cat, "tier:1"), ME)
    assert [c.deployment_id for c in plan.candidates][:2] in (["fast#1", "fast#2"], ["fast#2", "fast#1"])
    assert [c.tier for c in plan.candidates] == [1, 1, 2] and plan.tier == 1


def test_weighted_shuffle_follows_the_weights(cat):
    router = Router(cat, rng=random.Random(42))
    first = Counter(router.plan(req(cat, "fast"), ME).candidates[0].deployment_id for _ in range(4000))
    share = first["fast#1"] / 4000
    assert 0.70 < share < 0.80  # weight 3 of 4


def test_open_circuits_go_last(cat):
    router = Router(cat, rng=random.Random(3), circuit_open=lambda s: s.deployment_id == "fast#1")
    for _ in range(20):
        ids = [c.deployment_id for c in router.plan(req(cat, "tier:1"), ME).candidates]
        assert ids.index("fast#1") > ids.index("fast#2")


def test_capabilities_context_and_availability_filter(cat):
    router = Router(cat, rng=random.Random(0), available=lambda s: "no key" if s.name == "mid" else None)
    plan = router.plan(req(cat, "tier:0", tools=[{"type": "function", "function": {"name": "f"}}]), ME)
    assert plan.tier == 3 and plan.candidates[0].name == "top"  # only top has tools; mid has no key
    assert ("local", "lacks tools") in plan.skipped and ("mid", "no key") in plan.skipped
    long = "word " * 5000
    assert router.plan(req(cat, "tier:0", content=long), ME).tier == 1
    with pytest.raises(NoRouteAvailable, match="local: context 1000 too small"):
        Router(cat, available=lambda s: None if s.name == "local" else "off").plan(req(cat, "tier:0", content=long), ME)
    only_local = catalog_mod.parse(CATALOG.split("  - {name: fast")[0], source="t")
    with pytest.raises(ContextWindowExceeded):  # every candidate was too small: a 400, not a 503
        Router(only_local).plan(req(only_local, "tier:0", content=long), ME)


def test_the_budget_ceiling_caps_the_tier(cat):
    router = Router(cat, rng=random.Random(0))
    plan = router.plan(req(cat, "tier:3"), ME, max_tier=1)
    assert plan.tier == 1 and "capped at tier 1 by budget" in plan.reason
    plan = router.plan(req(cat, "writer"), ME, max_tier=1)
    assert plan.tier == 1 and "downgraded" in plan.reason


def test_auto_classifies_once_and_picks_the_task_tier(cat):
    r = req(cat, "auto", "Write a Python function that reverses a list")
    plan = Router(cat, rng=random.Random(0)).plan(r, ME)
    assert plan.task is r.task and plan.task.task_type == "coding" and plan.tier == 0


def test_keys_and_names(cat):
    router = Router(cat)
    with pytest.raises(ModelNotFound):
        router.plan(req(cat, "nope"), ME)
    with pytest.raises(PermissionDenied):
        router.plan(req(cat, "top"), Principal(key_id="k", allowed_tiers=frozenset({0, 1})))
    with pytest.raises(NoRouteAvailable):
        Router(cat, available=lambda s: "off").plan(req(cat, "tier:1"), ME)


def test_a_budgeted_key_is_never_routed_to_a_deployment_with_no_known_price():
    cat = catalog_mod.parse("""
models:
  - {name: unpriced, model: acme/unheard-of, adapter: openai-compatible, tier: 1, api_base: "http://x"}
  - {name: priced, model: acme/p, adapter: openai-compatible, tier: 2, api_base: "http://x",
     input_cost_per_mtok: 1, output_cost_per_mtok: 2}
""", source="t")
    assert not cat.by_id["unpriced"].price_known
    budgeted = Principal(key_id="k", budgeted=True)
    router = Router(cat)
    assert router.plan(req(cat, "tier:1"), ME).candidates[0].name == "unpriced"  # no budget: usable
    plan = router.plan(req(cat, "tier:1"), budgeted)
    assert [c.name for c in plan.candidates] == ["priced"]
    assert ("unpriced", "no known price (this key has a budget)") in plan.skipped
    assert "tier 1 had no usable deployment (unpriced: no known price" in plan.reason
    named = router.plan(req(cat, "unpriced"), budgeted)  # a named model falls back, saying why
    assert [c.name for c in named.candidates] == ["priced"] and "no known price" in named.reason
    only = catalog_mod.parse("models:\n  - {name: u, model: acme/u, adapter: openai-compatible, tier: 1, "
                             "api_base: 'http://x'}\n", source="t")
    with pytest.raises(PriceUnknown, match="has a known price, and this key has a budget") as e:
        Router(only).plan(req(only, "u"), budgeted)
    assert e.value.status == 400 and e.value.details["skipped"][0]["deployment"] == "u"
    mine = Principal(key_id="k", budgeted=True, allowed_models=frozenset({"unpriced"}))
    with pytest.raises(PriceUnknown):  # the priced model is not this key's: still the price's fault
        router.plan(req(cat, "unpriced"), mine)


def test_a_request_every_model_refuses_for_its_own_reasons_is_a_400_not_a_503():
    # Found by the fuzz suite: the priced model is too small for the request and the big one
    # has no known price under the key's budget. Each reason is the request's (or the key's):
    # nothing is down, so it is not a 503.
    cat = catalog_mod.parse("""
models:
  - {name: big, model: acme/unheard-of, adapter: openai-compatible, tier: 1, api_base: "http://x",
     context_window: 100000}
  - {name: small, model: acme/p, adapter: openai-compatible, tier: 1, api_base: "http://x",
     context_window: 1000, input_cost_per_mtok: 1, output_cost_per_mtok: 2}
""", source="t")
    budgeted = Principal(key_id="k", budgeted=True)
    with pytest.raises(InvalidRequest) as e:
        Router(cat).plan(req(cat, "tier:1", content="word " * 5000), budgeted)
    assert e.value.status == 400 and e.value.code == "no_model_fits"
    assert "big: no known price" in e.value.message and "small: context 1000 too small" in e.value.message
    with pytest.raises(NoRouteAvailable):  # a deployment that is down is the gateway's problem: still a 503
        Router(cat, available=lambda s: "off" if s.name == "small" else None).plan(req(cat, "tier:1"), budgeted)

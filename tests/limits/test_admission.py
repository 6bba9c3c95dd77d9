"""StoreAdmission over both stores: keys, budgets, soft limits, rate limits, expiry."""

from __future__ import annotations

import pytest

from tests.limits.conftest import MASTER, make_catalog
from tests.limits.helpers import outcome, request
from tiergate.errors import AuthenticationFailed, BudgetExceeded, PermissionDenied, PriceUnknown, RateLimited
from tiergate.limits import budgets, usage
from tiergate.limits.store_admission import StoreAdmission
from tiergate.limits.virtual_keys import KeyCreate, KeyService, hash_secret, key_id_for


class Clock:
    def __init__(self, t: float = 1_900_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def admission(settings, store, budgets_cfg=None, clock=None, **model_kw):
    cat = make_catalog(budgets_cfg, **model_kw)
    clock = clock or Clock()
    keys = KeyService(store, cache_ttl_s=settings.key_cache_ttl_s, clock=clock)
    return StoreAdmission(settings, cat, store, keys=keys, clock=clock), cat


async def new_key(adm, **kw):
    key, secret = await adm.keys.create(KeyCreate(**kw))
    return key, secret, await adm.authenticate(f"Bearer {secret}")


async def test_authenticate_master_and_virtual_keys(settings, store):
    adm, _ = admission(settings, store)
    assert (await adm.authenticate(f"Bearer {MASTER}")).is_master
    for bad in (None, "Bearer nope", "Basic abc", f"Bearer {MASTER}x", "Bearer sk-tg-unknown"):
        with pytest.raises(AuthenticationFailed):
            await adm.authenticate(bad)
    key, secret, p = await new_key(adm, tenant="acme", allowed_tiers=[0])
    assert (p.key_id, p.tenant, p.is_master, p.allowed_tiers) == (key.key_id, "acme", False, frozenset({0}))
    assert key.key_id == key_id_for(hash_secret(secret))  # the id is derived from the hash, not the secret text
    stored = await store.query("keys", key.key_id)
    assert secret not in str(stored) and stored[0]["sk"] != secret


async def test_revocation_takes_effect_after_the_cache_window(settings, store):
    clock = Clock()
    adm, _ = admission(settings, store, clock=clock)
    other = KeyService(store, cache_ttl_s=60, clock=clock)  # another process's admin service
    key, secret, _ = await new_key(adm, tenant="acme")
    await other.revoke(key.key_id)
    # still cached here (another process revoked it) ...
    assert (await adm.authenticate(f"Bearer {secret}")).key_id == key.key_id
    clock.t += settings.key_cache_ttl_s + 0.01  # the cache window passes
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await adm.authenticate(f"Bearer {secret}")


async def test_expired_key_is_refused(settings, store):
    clock = Clock()
    adm, _ = admission(settings, store, clock=clock)
    _, secret, _ = await new_key(adm, valid_until=clock.t + 10)
    clock.t += 11  # past valid_until and past the cache window
    with pytest.raises(AuthenticationFailed, match="expired"):
        await adm.authenticate(f"Bearer {secret}")


async def test_disallowed_tier(settings, store):
    adm, cat = admission(settings, store)
    _, _, p = await new_key(adm, allowed_tiers=[0])
    with pytest.raises(PermissionDenied):
        await adm.admit(p, request(cat.by_id["big"]))


async def test_reserve_then_settle_actual_cost(settings, store):
    adm, cat = admission(settings, store)
    _, _, p = await new_key(adm, tenant="acme", daily_budget_usd=1.0)
    dep = cat.by_id["small"]  # $1/M in, $2/M out: estimate 1000 in + 1000 out = $0.003
    t = await adm.admit(p, request(dep))
    key = p.metadata["key"]
    rep = {r["period"]: r for r in await budgets.report(store, adm.cfg, key=key, tenant="acme", now=Clock().t)}
    assert rep["day"]["reserved_usd"] == pytest.approx(0.003) and rep["day"]["spent_usd"] == 0
    await adm.settle(t, outcome(t, 1000, 500))  # actual $0.002
    rep = {r["period"]: r for r in await budgets.report(store, adm.cfg, key=key, tenant="acme", now=Clock().t)}
    assert rep["day"]["reserved_usd"] == 0 and rep["day"]["spent_usd"] == pytest.approx(0.002)
    assert rep["day"]["remaining_usd"] == pytest.approx(0.998)
    recs = await usage.query(store, key_id=p.key_id)
    assert len(recs) == 1 and recs[0]["cost_usd"] == pytest.approx(0.002) and recs[0]["tenant"] == "acme"
    assert recs[0]["completion_tokens"] == 500 and recs[0]["outcome"] == "ok"


async def test_hard_limit_rejects_with_scope_and_period(settings, store):
    adm, cat = admission(settings, store, {"tenant_defaults": {"monthly_usd": 0.01}})
    _, _, p = await new_key(adm, tenant="acme", daily_budget_usd=1.0)
    dep = cat.by_id["small"]
    for _ in range(3):  # 3 x $0.003 reserved = $0.009
        await adm.admit(p, request(dep))
    with pytest.raises(BudgetExceeded) as e:
        await adm.admit(p, request(dep))
    err = e.value
    assert err.status == 429 and err.code == "budget_exceeded"
    body = err.to_body()["error"]["tiergate"]
    assert body["scope"] == "tenant" and body["period"] == "month" and body["limit"] == 0.01
    assert body["spent"] == pytest.approx(0.009)


async def test_per_request_limit(settings, store):
    adm, cat = admission(settings, store, {"global": {"max_cost_per_request_usd": 0.001}})
    with pytest.raises(BudgetExceeded) as e:
        await adm.admit(await adm.authenticate(f"Bearer {MASTER}"), request(cat.by_id["small"]))
    assert e.value.details["period"] == "request" and e.value.details["scope"] == "global"


@pytest.mark.parametrize("limit", ["daily_budget_usd", "monthly_budget_usd", "max_cost_per_request_usd"])
async def test_a_key_budget_refuses_a_deployment_with_no_known_price(settings, store, limit):
    # "small" has no price in the catalog and none in the snapshot: it would be billed $0.
    adm, cat = admission(settings, store, input_cost_per_mtok=None, output_cost_per_mtok=None)
    small = cat.by_id["small"]
    assert not small.price_known
    _, _, budgeted = await new_key(adm, **{limit: 5.0})
    assert budgeted.budgeted
    with pytest.raises(PriceUnknown) as e:
        await adm.admit(budgeted, request(small))
    err = e.value
    assert (err.status, err.code, err.param) == (400, "price_unknown", "model")
    assert "has no known price" in err.message and "input_cost_per_mtok" in err.message
    assert ("key daily" if limit == "daily_budget_usd" else "key monthly" if limit == "monthly_budget_usd"
            else "key per-request") in err.message
    assert await store.query("usage", budgeted.key_id) == []  # refused before any hold or record
    await adm.admit(budgeted, request(cat.by_id["big"]))  # a priced model is fine under the same key
    # No budget applies: the unpriced deployment is admitted (nothing would be miscounted).
    _, _, free = await new_key(adm)
    assert not free.budgeted
    await adm.admit(free, request(small))
    await adm.admit(await adm.authenticate(f"Bearer {MASTER}"), request(small))


async def test_soft_limit_suggests_cheaper_tier(settings, store):
    adm, cat = admission(settings, store, {"soft_limit_fraction": 0.5})
    _, _, p = await new_key(adm, monthly_budget_usd=0.1)
    big = cat.by_id["big"]  # $10/M in, $20/M out: 1000+1000 -> $0.03
    t1 = await adm.admit(p, request(big))
    assert not t1.soft_limited and "x-tiergate-budget" not in t1.headers
    t2 = await adm.admit(p, request(big))  # 0.06 / 0.1 = 60 %
    assert t2.soft_limited and t2.max_tier == 0
    assert t2.headers["x-tiergate-budget"].startswith("soft-limit; scope=key; period=month; used=60.0%")
    assert adm.tier_ceiling(p) == 0


async def test_tier_allocation(settings, store):
    adm, cat = admission(settings, store, {"global": {"monthly_usd": 1.0}, "tier_allocations": {0: 0.5, 1: 0.05}})
    master = await adm.authenticate(f"Bearer {MASTER}")
    big = cat.by_id["big"]
    await adm.admit(master, request(big))  # $0.03 of the $0.05 tier-1 allocation
    with pytest.raises(BudgetExceeded) as e:
        await adm.admit(master, request(big))
    assert e.value.details["scope"] == "tier" and e.value.details["tier"] == 1
    await adm.admit(master, request(cat.by_id["small"]))  # tier 0 still has room


async def test_expired_reservation_is_charged_and_recorded_not_refunded(settings, store):
    """Finding 1: a hold whose request died is a call with an unknown outcome: it stays
    spent, and the ledger gets a record saying it was charged at its reservation."""
    clock = Clock(1_900_000_000.0006)  # sub-millisecond: the record's key must not depend on rounding
    adm, cat = admission(settings, store, {"reservation_ttl_s": 60}, clock=clock)
    _, _, p = await new_key(adm, daily_budget_usd=0.005)
    dep = cat.by_id["small"]
    dead = await adm.admit(p, request(dep))  # $0.003 held; the request "crashes" and never settles
    with pytest.raises(BudgetExceeded):
        await adm.admit(p, request(dep))
    clock.t += 61
    with pytest.raises(BudgetExceeded):  # expiry frees nothing: the money may have been spent
        await adm.admit(p, request(dep))
    await adm.drain()  # the rejection charged the full counter's orphans in the background
    recs = await usage.query(store, key_id=p.key_id)
    assert [(r["request_id"], r["outcome"], r["charged"]) for r in recs] == [
        (dead.request_id, "orphaned", "reservation")]
    assert recs[0]["cost_usd"] == pytest.approx(dead.reserved_usd)
    rep = await budgets.report(store, adm.cfg, key=p.metadata["key"], tenant=p.tenant, now=clock.t)
    assert rep[0]["spent_usd"] == pytest.approx(dead.reserved_usd) and rep[0]["reserved_usd"] == 0
    # The request's own settlement, arriving late, writes the same record: nothing twice.
    await adm.settle(dead, outcome(dead, 1000, 10))
    assert len(await usage.query(store, key_id=p.key_id)) == 1
    rep = await budgets.report(store, adm.cfg, key=p.metadata["key"], tenant=p.tenant, now=clock.t)
    assert rep[0]["spent_usd"] == pytest.approx(dead.reserved_usd)
    assert await adm.sweep() == 0  # nothing left to charge


async def test_sweep_charges_every_scope_of_an_orphan_once(settings, store):
    clock = Clock()
    cfg = {"reservation_ttl_s": 60, "global": {"daily_usd": 1.0}, "tenant_defaults": {"monthly_usd": 1.0}}
    adm, cat = admission(settings, store, cfg, clock=clock)
    _, _, p = await new_key(adm, tenant="acme", daily_budget_usd=0.5)
    dead = await adm.admit(p, request(cat.by_id["small"]))
    live = await adm.admit(p, request(cat.by_id["small"]))
    clock.t += 61
    await adm.settle(live, outcome(live, 1000, 500))
    assert await adm.sweep() == 1
    assert await adm.sweep() == 0
    for r in await budgets.report(store, adm.cfg, key=p.metadata["key"], tenant=p.tenant, now=clock.t):
        if r["scope"] in ("key", "tenant", "global"):
            assert r["reserved_usd"] == 0
            assert r["spent_usd"] == pytest.approx(dead.reserved_usd + 0.002), r
    outcomes = sorted(r["outcome"] for r in await usage.query(store, key_id=p.key_id))
    assert outcomes == ["ok", "orphaned"]
    m = await usage.metrics(store, adm.cfg, now=clock.t)
    assert m["requests_per_tier"] == {"0": 2}


async def test_release_without_upstream_call_writes_no_record(settings, store):
    """The ledger has a record exactly when a provider was called."""
    adm, cat = admission(settings, store, {"global": {"daily_usd": 1.0}})
    master = await adm.authenticate(f"Bearer {MASTER}")
    t = await adm.admit(master, request(cat.by_id["small"]))
    from dataclasses import replace
    await adm.settle(t, replace(outcome(t, 0, 0), cost_usd=0.0, outcome="error:upstream_unavailable",
                                upstream_called=False))
    assert await usage.query(store, key_id="master") == []
    rep = await budgets.report(store, adm.cfg, key=None, tenant=None, now=adm._clock())
    assert rep[0]["spent_usd"] == 0 and rep[0]["reserved_usd"] == 0
    t2 = await adm.admit(master, request(cat.by_id["small"]))
    await adm.settle(t2, replace(outcome(t2, 0, 0), cost_usd=0.0, outcome="unknown:upstream_timeout",
                                 charge_reservation=True))
    recs = await usage.query(store, key_id="master")
    assert [(r["outcome"], r["charged"], r["cost_usd"]) for r in recs] == [
        ("unknown:upstream_timeout", "reservation", pytest.approx(t2.reserved_usd))]
    rep = await budgets.report(store, adm.cfg, key=None, tenant=None, now=adm._clock())
    assert rep[0]["spent_usd"] == pytest.approx(t2.reserved_usd)


async def test_rate_limit_rpm_and_headers(settings, store):
    clock = Clock(1_899_999_970.0)  # 10 s into a minute window
    adm, cat = admission(settings, store, clock=clock)
    _, _, p = await new_key(adm, rpm=3, tpm=100_000)
    dep = cat.by_id["small"]
    tickets = [await adm.admit(p, request(dep, 100, 100)) for _ in range(3)]
    h = tickets[-1].headers
    assert h["x-ratelimit-limit-requests"] == "3" and h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"] == "50s"
    assert h["x-ratelimit-limit-tokens"] == "100000" and h["x-ratelimit-remaining-tokens"] == "99400"
    with pytest.raises(RateLimited) as e:
        await adm.admit(p, request(dep, 100, 100))
    assert e.value.headers["retry-after"] == "50" and e.value.headers["x-ratelimit-remaining-requests"] == "0"
    clock.t += 50  # next minute: the last minute's three still count in full (a sliding window)
    with pytest.raises(RateLimited):
        await adm.admit(p, request(dep, 100, 100))
    clock.t += 20  # 20 s into it: a third of the last minute has slid out
    await adm.admit(p, request(dep, 100, 100))
    with pytest.raises(RateLimited):
        await adm.admit(p, request(dep, 100, 100))


async def test_no_double_burst_at_a_minute_boundary(settings, store):
    """Finding 11: fixed windows let 2x the RPM through around a boundary."""
    clock = Clock(1_900_000_019.5)  # 0.5 s before a minute ends (1_900_000_020 is a whole minute)
    adm, cat = admission(settings, store, clock=clock)
    _, _, p = await new_key(adm, rpm=10)
    dep = cat.by_id["small"]

    async def burst() -> int:
        ok = 0
        for _ in range(15):
            try:
                await adm.admit(p, request(dep, 10, 10))
                ok += 1
            except RateLimited:
                pass
        return ok

    first = await burst()
    clock.t += 1.0  # 0.5 s into the next minute
    second = await burst()
    assert first == 10 and second == 0  # at most 10 in any 60 s
    clock.t += 59.5  # a whole minute after the first burst
    assert await burst() == 10


async def test_tpm_counts_estimate_then_actual(settings, store):
    adm, cat = admission(settings, store, tpm=1000)  # deployment quota from the catalog
    master = await adm.authenticate(f"Bearer {MASTER}")
    dep = cat.by_id["small"]
    t = await adm.admit(master, request(dep, 300, 500))  # 800 tokens held
    with pytest.raises(RateLimited) as e:
        await adm.admit(master, request(dep, 300, 500))
    assert e.value.details["scope"] == "deployment" and e.value.details["kind"] == "tokens"
    await adm.settle(t, outcome(t, 300, 100))  # actually 400
    t2 = await adm.admit(master, request(dep, 300, 300))
    assert t2.headers["x-ratelimit-remaining-tokens"] == "0"
    with pytest.raises(RateLimited):
        await adm.admit(master, request(dep, 1000, 1000))  # more than the whole quota


async def test_metrics_and_reset(settings, store):
    adm, cat = admission(settings, store, {"global": {"monthly_usd": 10.0}})
    master = await adm.authenticate(f"Bearer {MASTER}")
    for dep, cap in ((cat.by_id["small"], "coding"), (cat.by_id["small"], "coding"), (cat.by_id["big"], "analysis")):
        t = await adm.admit(master, request(dep))
        await adm.settle(t, outcome(t, 1000, 1000, capability=cap))
    m = await usage.metrics(store, adm.cfg, now=Clock().t)
    assert m["requests_per_tier"] == {"0": 2, "1": 1}
    assert m["cost_per_tier"] == {"0": pytest.approx(0.006), "1": pytest.approx(0.03)}
    assert m["budget_utilization_percentage"] == pytest.approx(0.36)
    assert m["most_used_capabilities"] == ["coding", "analysis"]
    assert (await usage.reset(store))["metrics_counters"] == 6
    assert (await usage.metrics(store, adm.cfg, now=Clock().t))["requests_per_tier"] == {}


async def test_orphan_whose_record_was_written_is_charged_its_actual_cost(settings_for):
    """DynamoDB settles in two steps (the record, then the counters; SQLite in one
    transaction): a settlement that died between them leaves a hold whose record exists.
    The sweep settles the counters at the record's actual cost and writes no second record."""
    from tiergate.stores import open_store

    settings = settings_for("dynamodb")
    store = open_store(settings, create_tables=True)
    clock = Clock(1_900_000_000.25)
    adm, cat = admission(settings, store, {"reservation_ttl_s": 60}, clock=clock)
    _, _, p = await new_key(adm, daily_budget_usd=1.0)
    t = await adm.admit(p, request(cat.by_id["small"]))
    from tiergate.limits.usage import usage_record
    rec = usage_record(t, outcome(t, 1000, 10), now=clock.t, retention_days=1, hold_id=t.handles[0].hold_id)
    await store.put("usage", rec)  # ... and the process died here
    clock.t += 61
    assert await adm.sweep() == 1
    recs = await usage.query(store, key_id=p.key_id)
    assert [(r["outcome"], r["cost_usd"]) for r in recs] == [("ok", rec["cost_usd"])]
    rep = await budgets.report(store, adm.cfg, key=p.metadata["key"], tenant=p.tenant, now=clock.t)
    assert rep[0]["spent_usd"] == pytest.approx(rec["cost_usd"]) and rep[0]["reserved_usd"] == 0
    await store.aclose()

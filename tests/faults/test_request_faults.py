"""A failure injected at each stage of a request -- before admission, after admission,
mid-upstream, mid-stream, before settlement -- and after each: the hold is settled,
released or charged; a usage record exists exactly when the upstream was called; spend
never exceeds the limit. On SQLite and on DynamoDB (dynalite), through the real gateway,
executor, native adapter and the upstream simulator (findings 1, 2, 7, 9, 11)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tiergate.errors import (
    BudgetExceeded,
    GatewayError,
    InvalidRequest,
    StreamInterrupted,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)


def calls(sim, model: str | None = None) -> int:
    return len([r for r in sim.requests(model=model) if r["path"].endswith("/chat/completions")])


# --- before admission -----------------------------------------------------------------


async def test_refused_before_admission_holds_nothing(make_rig, sim):
    r = await make_rig()
    with pytest.raises(InvalidRequest):
        r.request(model="tier:1\n")
    with pytest.raises(GatewayError):
        await r.gateway.handle(r.request(model="no-such-model"), r.principal)
    await r.assert_invariants(upstream_calls=calls(sim))
    assert calls(sim) == 0


class _FailOnReplan:
    """The router, failing (a bug) when the soft limit makes the gateway re-plan."""

    def __init__(self, inner):
        self.inner = inner

    def plan(self, req, principal, *, max_tier=None):
        if max_tier is not None:
            raise RuntimeError("injected: router crashed while re-planning")
        return self.inner.plan(req, principal, max_tier=max_tier)

    def tier_candidates(self, *a, **kw):
        return self.inner.tier_candidates(*a, **kw)


# --- after admission, before the upstream -----------------------------------------------


async def test_crash_after_admission_releases_the_hold(make_rig, sim):
    """Finding 2: an exception inside the gateway after admission used to keep the hold."""
    r = await make_rig(soft=0.0001, up=1)
    r.services.router = _FailOnReplan(r.services.router)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="injected"):
            await r.gateway.handle(r.request(model="dear"), r.principal)
    await r.assert_invariants(upstream_calls=0)
    assert (await r.budget())["spent_usd"] == 0


async def test_unreachable_upstream_releases_without_a_record(make_rig, sim):
    r = await make_rig()
    with pytest.raises(UpstreamUnavailable):
        await r.gateway.handle(r.request(model="nowhere"), r.principal)
    await r.assert_invariants(upstream_calls=0)


# --- mid-upstream -----------------------------------------------------------------------


async def test_upstream_error_status_is_recorded_at_no_cost(make_rig, sim):
    r = await make_rig()
    sim.script("cheap-a", [{"status": 500}])
    with pytest.raises(UpstreamServerError):
        await r.gateway.handle(r.request(), r.principal)
    recs = await r.assert_invariants(upstream_calls=calls(sim))
    assert [(x["outcome"], x["cost_usd"], x["charged"]) for x in recs] == [("error:upstream_server_error", 0, "actual")]


@pytest.mark.parametrize("step,code", [({"hang": True, "hang_s": 5}, "upstream_timeout"),
                                       ({"drop": True}, "upstream_server_error")])
async def test_lost_answer_is_charged_at_the_reservation(make_rig, sim, step, code):
    """An attempt that was sent and whose answer was lost may have been billed in full."""
    r = await make_rig(timeout=0.5)
    sim.script("cheap-a", [step])
    with pytest.raises((UpstreamTimeout, UpstreamServerError)):
        await r.gateway.handle(r.request(max_tokens=50), r.principal)
    recs = await r.assert_invariants(upstream_calls=1)
    assert [(x["outcome"], x["charged"]) for x in recs] == [(f"unknown:{code}", "reservation")]
    assert recs[0]["cost_usd"] == pytest.approx(recs[0]["reserved_usd"]) and recs[0]["cost_usd"] > 0


async def test_retry_after_a_lost_answer_reserves_again(make_rig, sim):
    r = await make_rig(timeout=0.5, attempts=2)
    sim.script("cheap-a", [{"hang": True, "hang_s": 5}])
    done = await r.gateway.handle(r.request(max_tokens=50), r.principal)
    assert done.meta.attempts == 2
    recs = await r.assert_invariants(upstream_calls=2)
    assert sorted((x["outcome"], x["charged"]) for x in recs) == [("ok", "actual"),
                                                                  ("unknown:upstream_timeout", "reservation")]


async def test_no_retry_after_a_lost_answer_when_the_budget_cannot_cover_it(make_rig, sim):
    # 50 answer tokens + ~30 prompt reserve ~ $0.08: a $0.1 budget covers one attempt only.
    r = await make_rig(timeout=0.5, attempts=2, limit_usd=0.1)
    sim.script("cheap-a", [{"hang": True, "hang_s": 5}])
    with pytest.raises(UpstreamTimeout):
        await r.gateway.handle(r.request(max_tokens=50), r.principal)
    recs = await r.assert_invariants(upstream_calls=1)
    assert [x["outcome"] for x in recs] == ["unknown:upstream_timeout"]


async def test_cancelled_mid_upstream_is_charged_at_the_reservation(make_rig, sim):
    r = await make_rig()
    sim.script("cheap-a", [{"hang": True, "hang_s": 5}])
    task = asyncio.create_task(r.gateway.handle(r.request(max_tokens=20), r.principal))
    deadline = time.monotonic() + 5
    while calls(sim) == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    recs = await r.assert_invariants(upstream_calls=1)
    assert [(x["outcome"], x["charged"]) for x in recs] == [("unknown:cancelled", "reservation")]


async def test_null_usage_from_the_provider_is_estimated_and_settled(make_rig, sim):
    """A provider answering ``"usage": null`` used to crash the gateway after the call."""
    r = await make_rig()
    body = ('{"id":"x","object":"chat.completion","created":1,"model":"cheap-a","usage":null,'
            '"choices":[{"index":0,"message":{"role":"assistant","content":"fine thanks"},"finish_reason":"stop"}]}')
    sim.script("cheap-a", [{"raw_body": body}])
    done = await r.gateway.handle(r.request(), r.principal)
    assert done.response["usage"]["completion_tokens"] > 0
    recs = await r.assert_invariants(upstream_calls=1)
    assert recs[0]["outcome"] == "ok" and recs[0]["cost_usd"] > 0


# --- mid-stream -------------------------------------------------------------------------


async def _consume(s, n: int | None = None) -> list[dict]:
    out = []
    async for chunk in s.chunks:
        out.append(chunk)
        if n is not None and len(out) >= n:
            break
    return out


async def test_stream_cut_by_the_upstream_bills_what_was_produced(make_rig, sim):
    r = await make_rig()
    sim.script("cheap-a", [{"content": "one two three four five six", "disconnect_after": 3}])
    s = await r.gateway.handle(r.request(stream=True), r.principal)
    with pytest.raises(StreamInterrupted):
        await _consume(s)
    await s.aclose()
    recs = await r.assert_invariants(upstream_calls=1)
    assert recs[0]["outcome"] == "error:stream_interrupted" and recs[0]["completion_tokens"] > 0


async def test_streams_dropped_after_the_first_byte_open_the_circuit(make_rig, sim):
    """Finding 9: a deployment that drops every stream used to stay closed."""
    r = await make_rig()
    sim.set_default("cheap-a", {"content": "one two three four", "disconnect_after": 1})
    for _ in range(3):
        s = await r.gateway.handle(r.request(stream=True), r.principal)
        with pytest.raises(StreamInterrupted):
            await _consume(s)
        await s.aclose()
    assert r.services.circuits.state("cheap") == "open"
    await r.assert_invariants(upstream_calls=3)


async def test_client_leaving_mid_stream_bills_what_was_produced(make_rig, sim):
    r = await make_rig()
    sim.script("cheap-a", [{"content": "one two three four five six seven", "chunk_delay_ms": 20}])
    s = await r.gateway.handle(r.request(stream=True), r.principal)
    await _consume(s, 2)
    await s.aclose()
    recs = await r.assert_invariants(upstream_calls=1)
    assert recs[0]["outcome"] == "client_disconnected" and recs[0]["cost_usd"] > 0


async def test_stream_never_iterated_still_settles(make_rig, sim):
    """The client left before the response started: the stream is closed unstarted."""
    r = await make_rig()
    s = await r.gateway.handle(r.request(stream=True), r.principal)
    await s.aclose()
    recs = await r.assert_invariants(upstream_calls=1)
    assert recs[0]["outcome"] == "client_disconnected"


# --- before settlement ------------------------------------------------------------------


async def test_failed_settlement_leaves_a_hold_that_is_charged_not_lost(make_rig, sim):
    from tiergate.limits.orphans import charge_orphans

    r = await make_rig()
    real = r.store.settle
    failures = [OSError("injected: disk I/O error at settlement")]

    async def flaky(*a, **kw):
        if failures:
            raise failures.pop()
        return await real(*a, **kw)

    r.store.settle = flaky  # type: ignore[method-assign]
    with pytest.raises(OSError, match="injected"):
        await r.gateway.handle(r.request(max_tokens=30), r.principal)
    b = await r.budget()
    assert b["reserved_usd"] > 0 and b["spent_usd"] == 0  # not refunded, not lost
    # On expiry (reservation_ttl_s) the sweep charges it at its reservation, with a record.
    later = int(time.time()) + 120
    holds = await r.store.orphaned_holds(now=later)
    assert await charge_orphans(r.store, holds, now=later, retention_days=1) == 1
    recs = await r.assert_invariants(upstream_calls=1)
    assert [(x["outcome"], x["charged"]) for x in recs] == [("orphaned", "reservation")]


# --- the limit holds whatever the provider reports (finding 7) ---------------------------


async def test_spend_stays_within_the_limit_when_the_provider_counts_more(make_rig, sim):
    """The provider counts 20 % more prompt tokens than our estimate and uses every
    answer token allowed: the margin and the upstream cap keep spend within the limit."""
    r = await make_rig(limit_usd=1.0)
    req = r.request("x" * 400, max_tokens=40)
    prompt = int(req.needs.prompt_tokens * 1.2)
    sim.set_default("cheap-a", {"usage": {"prompt_tokens": prompt, "completion_tokens": 40}})
    refused = 0
    for _ in range(20):
        try:
            await r.gateway.handle(r.request("x" * 400, max_tokens=40), r.principal)
        except BudgetExceeded:
            refused += 1
    assert refused > 0
    b = await r.budget()
    assert b["spent_usd"] <= 1.0 and b["reserved_usd"] == 0
    await r.assert_invariants(upstream_calls=calls(sim))


async def test_a_dearer_fallback_reserves_its_own_worst_case(make_rig, sim):
    """No client max_tokens: the reservation is sized for the first deployment's longest
    answer; a dearer fallback first reserves its own worst case (the first reservation,
    which covered no billable call, is released)."""
    r = await make_rig(up=1)
    sim.set_default("cheap-a", {"status": 500})
    done = await r.gateway.handle(r.request("tell me"), r.principal)
    assert done.deployment.name == "dear"
    assert "max_tokens" not in sim.requests(model="dear-b")[0]["body"]  # its own limit is covered
    recs = await r.assert_invariants(upstream_calls=1, records=1)
    assert recs[0]["reserved_usd"] > 4 * 200 * 1000 / 1e6 * 0.99  # dear's 200 answer tokens at $4000/M


async def test_a_dearer_fallback_the_budget_cannot_cover_is_capped(make_rig, sim):
    """When the budget cannot reserve the dearer fallback's worst case, its answer is capped
    (max_tokens) at what the first reservation covers."""
    r = await make_rig(up=1, limit_usd=0.5)  # cheap's worst case ~$0.23 fits, dear's ~$0.9 does not
    sim.set_default("cheap-a", {"status": 500})
    done = await r.gateway.handle(r.request("tell me"), r.principal)
    assert done.deployment.name == "dear"
    sent = sim.requests(model="dear-b")[0]["body"]
    assert 0 < sent["max_tokens"] < 200 / 4 + 1
    await r.assert_invariants(upstream_calls=1, records=1)

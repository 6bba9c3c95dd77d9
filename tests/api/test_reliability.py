"""Retries, Retry-After, fallback order, circuits, timeouts and stream failures, seen
from the client and from the upstream's request log."""

from __future__ import annotations

import httpx
import openai
import pytest


def _models_called(sim) -> list[str]:
    return [r["model"] for r in sim.requests() if r["path"].endswith("/chat/completions")]


def test_retry_same_deployment_after_503(client, sim):
    sim.script("fast-a", [{"status": 503}])
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert raw.parse().choices[0].message.content == "echo: x [model=fast-a]"
    assert raw.headers["x-tiergate-attempts"] == "2"
    assert _models_called(sim) == ["fast-a", "fast-a"]


def test_retry_after_is_honoured_as_a_floor(client, sim):
    sim.script("fast-a", [{"status": 429, "retry_after": "1"}])
    client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    first, second = sim.requests(model="fast-a")
    assert second["t"] - first["t"] >= 0.95


def test_long_retry_after_moves_to_next_deployment_at_once(client, sim):
    sim.script("fast-a", [{"status": 429, "retry_after": "120"}])
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-tiergate-model"] == "fast-b"
    assert _models_called(sim) == ["fast-a", "fast-b"]


def test_fallback_same_tier_then_up_one_tier(client, sim):
    sim.set_default("fast-a", {"status": 500})
    sim.set_default("fast-b", {"status": 502})
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-tiergate-model"] == "sonnet" and raw.headers["x-tiergate-tier"] == "2"
    assert raw.headers["x-tiergate-attempts"] == "5"
    assert [m for m in _models_called(sim)] == ["fast-a", "fast-a", "fast-b", "fast-b"]
    assert len(sim.requests(model="claude-sim")) == 1


def test_all_failing_gives_502_naming_every_attempt(client, sim):
    for m in ("fast-a", "fast-b", "claude-sim"):
        sim.set_default(m, {"status": 500})
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 502
    err = ei.value.body
    assert err["code"] == "upstream_server_error"
    tried = [a["deployment"] for a in err["tiergate"]["attempts"]]
    assert tried == ["fast", "fast", "fast-b", "fast-b", "sonnet", "sonnet"]


def test_bad_request_upstream_is_not_retried(client, sim):
    sim.script("fast-a", [{"status": 400, "error_message": "bad param foo"}])
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert "bad param foo" in ei.value.message
    assert _models_called(sim) == ["fast-a"]


def test_attempt_timeout_then_fallback(client, sim):
    sim.set_default("fast-a", {"hang": True})
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-tiergate-model"] == "fast-b"


def test_timeout_everywhere_is_504(gateway_factory, sim):
    url, _ = gateway_factory("""
models:
  - {name: slow, model: openai/slow, adapter: openai-compatible, tier: 1, api_base: "{sim}", timeout_s: 0.3}
reliability: {max_attempts_per_deployment: 1}
""")
    sim.set_default("slow", {"hang": True})
    r = httpx.post(url + "/v1/chat/completions", json={"model": "slow", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "upstream_timeout"


def test_circuit_opens_skips_and_half_opens(client, gw, sim):
    sim.set_default("fast-a", {"status": 500})
    # threshold 3: two attempts in the first request, one in the second -> open.
    for _ in range(2):
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    health = httpx.get(gw[0] + "/health").json()
    fast = next(d for d in health["deployments"] if d["deployment"] == "fast")
    assert fast["circuit"] == "open"
    n = len(sim.requests(model="fast-a"))
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-tiergate-model"] == "fast-b"
    assert len(sim.requests(model="fast-a")) == n  # open: not called at all
    assert raw.headers["x-tiergate-attempts"] == "1"  # the skipped open circuit is no attempt
    # After the cooldown one probe goes through; its success closes the circuit.
    sim.set_default("fast-a", None)
    import time

    time.sleep(0.6)
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-tiergate-model"] == "fast"
    health = httpx.get(gw[0] + "/health").json()
    assert next(d for d in health["deployments"] if d["deployment"] == "fast")["circuit"] == "closed"


def test_stream_falls_back_before_first_byte(client, sim):
    sim.set_default("fast-a", {"status": 503})
    stream = client.chat.completions.with_raw_response.create(
        model="fast", stream=True, messages=[{"role": "user", "content": "a b c"}])
    assert stream.headers["x-tiergate-model"] == "fast-b"
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert text == "echo: a b c [model=fast-b]"


def test_mid_stream_disconnect_ends_with_error_event(client, sim):
    sim.script("fast-a", [{"disconnect_after": 2, "chunks": 6}])
    stream = client.chat.completions.create(model="fast", stream=True,
                                            messages=[{"role": "user", "content": "a b c d e f"}])
    got = []
    with pytest.raises(openai.APIError) as ei:
        for c in stream:
            if c.choices and c.choices[0].delta.content:
                got.append(c.choices[0].delta.content)
    assert len(got) == 2
    assert "interrupted" in str(ei.value)
    assert len(sim.requests(model="fast-a")) == 1  # no silent retry after bytes were sent

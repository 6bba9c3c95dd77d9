"""The Executor against the real native adapter and the upstream simulator, with the
sleep and the randomness injected: backoff delays are checked exactly, nobody waits."""

from __future__ import annotations

import random
import time

import pytest

from tiergate.config import catalog as catalog_mod
from tiergate.errors import DeadlineExceeded, UpstreamBadRequest, UpstreamServerError
from tiergate.execution.backoff import retry_delay
from tiergate.execution.circuit import CircuitBoard
from tiergate.execution.executor import CallContext, Executor
from tiergate.providers.credentials import EnvKeyResolver
from tiergate.providers.registry import default_registry

CATALOG = """
models:
  - {name: a, model: openai/ex-a, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 1, output_cost_per_mtok: 2}
  - {name: b, model: openai/ex-b, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 1, output_cost_per_mtok: 2}
reliability: {max_attempts_per_deployment: 3, backoff_base_s: 0.5, backoff_max_s: 4, max_retry_after_s: 10,
              circuit_failure_threshold: 2, circuit_cooldown_s: 30}
"""
BODY = {"messages": [{"role": "user", "content": "hi"}]}


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def parts(sim):
    cat = catalog_mod.parse(CATALOG.replace("{sim}", sim.openai_base), source="t")
    registry = default_registry()
    sleeps = Sleeps()
    circuits = CircuitBoard(threshold=3, cooldown_s=30)
    ex = Executor(cat, registry, EnvKeyResolver({}), circuits, sleep=sleeps, rng=random.Random(7))
    yield cat, ex, sleeps, circuits
    await registry.aclose()


def ctx(deadline_s: float = 60) -> CallContext:
    return CallContext(request_id="t", deadline=time.monotonic() + deadline_s)


async def test_retries_with_full_jitter_backoff_then_answers(parts, sim):
    cat, ex, sleeps, _ = parts
    sim.script("ex-a", [{"status": 500}, {"status": 503}])
    r = await ex.execute([cat.by_id["a"]], BODY, ctx())
    assert r.deployment.name == "a" and [a.outcome for a in r.attempts][-1] == "ok" and len(r.attempts) == 3
    twin = random.Random(7)  # the same seed: the delays are exactly the jitter the executor drew
    assert sleeps.delays == [retry_delay(n, None, base=0.5, cap=4, rng=twin) for n in (1, 2)]
    assert all(0 <= d <= 0.5 * 2 ** i for i, d in enumerate(sleeps.delays))


async def test_retry_after_is_a_floor(parts, sim):
    cat, ex, sleeps, _ = parts
    sim.script("ex-a", [{"status": 429, "retry_after": 3}])
    await ex.execute([cat.by_id["a"]], BODY, ctx())
    assert sleeps.delays == [3.0]


async def test_a_long_retry_after_moves_to_the_next_deployment_without_waiting(parts, sim):
    cat, ex, sleeps, _ = parts
    sim.script("ex-a", [{"status": 429, "retry_after": 60}])
    r = await ex.execute([cat.by_id["a"], cat.by_id["b"]], BODY, ctx())
    assert r.deployment.name == "b" and sleeps.delays == []


async def test_a_bad_request_ends_the_chain_at_once(parts, sim):
    cat, ex, sleeps, _ = parts
    sim.script("ex-a", [{"status": 400}])
    with pytest.raises(UpstreamBadRequest):
        await ex.execute([cat.by_id["a"], cat.by_id["b"]], BODY, ctx())
    assert sim.requests(model="ex-b") == [] and sleeps.delays == []


async def test_failures_open_the_circuit_and_the_chain_falls_back(parts, sim):
    cat, ex, _, circuits = parts
    sim.set_default("ex-a", {"status": 500})
    r = await ex.execute([cat.by_id["a"], cat.by_id["b"]], BODY, ctx())
    assert r.deployment.name == "b" and circuits.state("a") == "open"
    n = len(sim.requests(model="ex-a"))
    r = await ex.execute([cat.by_id["a"], cat.by_id["b"]], BODY, ctx())
    assert r.deployment.name == "b" and len(sim.requests(model="ex-a")) == n  # skipped while open


async def test_every_attempt_failing_names_them_all(parts, sim):
    cat, ex, _, _ = parts
    sim.set_default("ex-a", {"status": 500})
    sim.set_default("ex-b", {"status": 502})
    with pytest.raises(UpstreamServerError) as e:
        await ex.execute([cat.by_id["a"], cat.by_id["b"]], BODY, ctx())
    assert "All attempts failed" in e.value.message and {a["deployment"] for a in e.value.details["attempts"]} == {"a", "b"}


async def test_no_attempt_starts_after_the_deadline(parts, sim):
    cat, ex, _, _ = parts
    with pytest.raises(DeadlineExceeded):
        await ex.execute([cat.by_id["a"]], BODY, ctx(deadline_s=-1))
    assert sim.requests(model="ex-a") == []

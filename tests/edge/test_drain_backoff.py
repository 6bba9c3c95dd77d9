"""Finding 8: after a cloud crash its idempotency leases of dead requests are lost within
``idempotency_lease_s``, and the edge drainer backs off per job (full jitter) instead of
retrying those jobs in a tight loop -- and never holds up the jobs behind them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.support.gateway import serve_app
from tiergate.compose import build_app
from tiergate.config import catalog as catalog_mod
from tiergate.limits.idempotency import SK, TABLE, request_hash
from tiergate.settings import Settings
from tiergate_edge.cloud_client import CloudClient
from tiergate_edge.connectivity import CloudHealth
from tiergate_edge.drain import Drainer
from tiergate_edge.jobs import JobQueue, JobStore

MASTER = "sk-master-drain"
CAT = """
models:
  - {name: sim-fast, model: openai/drain-fast, adapter: openai-compatible, api_base: "{sim}", tier: 1}
budgets:
  idempotency_lease_s: 2
"""


def test_jobs_behind_a_stuck_one_drain_and_the_stuck_one_backs_off(sim, tmp_path: Path) -> None:
    cat = catalog_mod.parse(CAT.replace("{sim}", sim.openai_base), source="test")
    settings = Settings(environment="test", master_key=MASTER, store="sqlite", sqlite_path=tmp_path / "cloud.db",
                        data_dir=tmp_path)
    app = build_app(settings, cat)
    queue = JobQueue(JobStore(tmp_path / "jobs.sqlite3"))
    body = {"model": "sim-fast", "messages": [{"role": "user", "content": "x"}]}
    jobs = [asyncio.run(queue.enqueue({**body, "messages": [{"role": "user", "content": f"job {i}"}]},
                                      {"key_id": "local"}, {})) for i in range(10)]
    with serve_app(app) as url:
        # The cloud died while it ran the first two: their in-progress leases are left behind.
        store = app.state.services.store
        for j in jobs[:2]:
            asyncio.run(store.put(TABLE, {"pk": f"master#{j.idem_key}", "sk": SK, "status": "in_progress",
                                          "token": "dead", "request_hash": request_hash(j.body),
                                          "expires_at": int(time.time()) + 2}))

        async def drain() -> tuple[Drainer, float]:
            async with httpx.AsyncClient() as client:
                health = CloudHealth(url, client)
                await health.probe_once()
                d = Drainer(queue, CloudClient(url, MASTER, client), health, concurrency=2,
                            backoff_base_s=0.2, backoff_max_s=1.0)
                t0 = time.monotonic()
                first = await d.drain_once()
                states = [(j.status, j.attempts, j.error) for j in [await queue.get(x.id) for x in jobs]]
                assert first == 8, "\n".join(map(str, states))  # the eight behind the stuck two, in the same round
                while (await queue.counts())["done"] < 10 and time.monotonic() - t0 < 20:
                    await asyncio.sleep(0.1)
                    await d.drain_once()
                return d, time.monotonic() - t0

        d, took = asyncio.run(drain())
    counts = asyncio.run(queue.counts())
    assert counts["done"] == 10, counts
    # The two stuck jobs were refused (409) until their dead leases expired (~2 s), with
    # backoff between tries: a handful of attempts each, not thousands.
    stuck = [asyncio.run(queue.get(j.id)) for j in jobs[:2]]
    assert all(2 <= j.attempts <= 12 for j in stuck), [j.attempts for j in stuck]
    assert d.attempts <= 8 + 24 and took < 15
    assert len([r for r in sim.requests(model="drain-fast")]) == 10  # each job reached the upstream once

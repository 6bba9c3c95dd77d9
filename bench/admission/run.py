"""Admission + settlement cost per request, on each store.

    python bench/admission/run.py [--n 500] [--concurrency 32] [--stores sqlite,dynamodb]

For each store (a SQLite file; DynamoDB = dynalite on 127.0.0.1, started here) a virtual
key with RPM/TPM and day/month budgets, a tenant and a global budget and a tier
allocation is admitted and settled ``--n`` times sequentially, then ``--n`` times with
``--concurrency`` clients. Printed: store round trips per request (admit, settle),
latency median/p99 of authenticate (cached), admit and settle, and the worst event-loop
stall seen while the concurrent clients ran (a ticker that should wake every 1 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.procs import free_port, port_open, spawn, stop, wait_for  # noqa: E402
from tiergate.config.catalog import CatalogFile, resolve  # noqa: E402
from tiergate.limits.admission import AdmissionRequest, Outcome  # noqa: E402
from tiergate.limits.store_admission import StoreAdmission  # noqa: E402
from tiergate.limits.virtual_keys import KeyCreate  # noqa: E402
from tiergate.settings import Settings  # noqa: E402
from tiergate.stores import open_store  # noqa: E402

CATALOG = resolve(CatalogFile.model_validate({
    "models": [{"name": "m", "model": "openai/m", "tier": 1, "input_cost_per_mtok": 0.15,
                "output_cost_per_mtok": 0.6, "rpm": 10_000_000, "tpm": 10_000_000_000}],
    "budgets": {"global": {"daily_usd": 1e6, "monthly_usd": 1e7}, "tenant_defaults": {"daily_usd": 1e6},
                "tier_allocations": {0: 0.2, 1: 0.8}},
}))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def fmt(name: str, xs: list[float]) -> str:
    return f"{name:<12} median {statistics.median(xs):7.3f} ms   p99 {pct(xs, 0.99):7.3f} ms"


async def one(adm: StoreAdmission, secret: str, lat: dict[str, list[float]]) -> None:
    dep = CATALOG.models[0]
    t0 = time.perf_counter()
    p = await adm.authenticate(f"Bearer {secret}")
    t1 = time.perf_counter()
    t = await adm.admit(p, AdmissionRequest(uuid.uuid4().hex, dep, 500, 500, dep.cost_usd(500, 500)))
    t2 = time.perf_counter()
    await adm.settle(t, Outcome(dep, 500, 200, dep.cost_usd(500, 200), 100.0, 1, "ok", capability="general"))
    t3 = time.perf_counter()
    lat["auth"].append((t1 - t0) * 1e3)
    lat["admit"].append((t2 - t1) * 1e3)
    lat["settle"].append((t3 - t2) * 1e3)


async def ticker(stop_at: list[bool], worst: list[float]) -> None:
    while not stop_at[0]:
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        worst[0] = max(worst[0], (time.perf_counter() - t) * 1e3 - 1.0)


async def bench(settings: Settings, n: int, conc: int) -> None:
    store = open_store(settings, create_tables=settings.store == "dynamodb")
    adm = StoreAdmission(settings, CATALOG, store, owns_store=True)
    _, secret = await adm.keys.create(KeyCreate(tenant="bench", rpm=10_000_000, tpm=10_000_000_000,
                                                daily_budget_usd=1e6, monthly_budget_usd=1e7))
    await one(adm, secret, {"auth": [], "admit": [], "settle": []})  # warm the key cache and connections
    lat: dict[str, list[float]] = {"auth": [], "admit": [], "settle": []}
    rt0 = store.round_trips
    for _ in range(n):
        await one(adm, secret, lat)
    per = (store.round_trips - rt0) / n
    print(f"\n[{settings.store}] sequential, {n} requests: {per:.2f} store round trips per request "
          f"(admit 1 + settle 1; 7 budget/rate counters per admission)")
    for k, xs in lat.items():
        print("  " + fmt(k, xs))
    lat = {"auth": [], "admit": [], "settle": []}
    stop_flag, worst = [False], [0.0]
    tick = asyncio.create_task(ticker(stop_flag, worst))
    sem = asyncio.Semaphore(conc)

    async def guarded() -> None:
        async with sem:
            await one(adm, secret, lat)

    t0 = time.perf_counter()
    await asyncio.gather(*(guarded() for _ in range(n)))
    wall = time.perf_counter() - t0
    stop_flag[0] = True
    await tick
    print(f"[{settings.store}] {conc} concurrent clients: {n / wall:,.0f} admitted+settled requests/s; "
          f"worst event-loop stall {worst[0]:.2f} ms")
    for k, xs in lat.items():
        print("  " + fmt(k, xs))
    await adm.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--stores", default="sqlite,dynamodb")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tiergate-bench-"))
    base = {"environment": "test", "master_key": "m", "data_dir": tmp, "key_cache_ttl_s": 60}
    for kind in args.stores.split(","):
        if kind == "sqlite":
            asyncio.run(bench(Settings(**base, store="sqlite", sqlite_path=tmp / "bench.sqlite3"), args.n,
                              args.concurrency))
        elif kind == "dynamodb":
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                os.environ.setdefault(k, "bench")
            port = free_port()
            proc = spawn([str(ROOT / "node_modules/.bin/dynalite"), "--host", "127.0.0.1", "--port", str(port),
                          "--createTableMs", "0"], log=tmp / "dynalite.log")
            try:
                wait_for(lambda p=port: port_open(p), timeout=30, what="dynalite", proc=proc)
                asyncio.run(bench(Settings(**base, store="dynamodb",
                                           dynamodb_endpoint_url=f"http://127.0.0.1:{port}"), args.n, args.concurrency))
            finally:
                stop(proc)


if __name__ == "__main__":
    main()

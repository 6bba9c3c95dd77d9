"""The long crash drills and the soak (issue 13), printing every figure.

    python bench/crash/run.py [--runs 3] [--requests 300] [--stores sqlite,dynamodb]
                              [--soak 20000] [--soak-concurrency 50]

Crash drill (per store, ``--runs`` times): ``tiergate serve`` under ``--requests``
concurrent requests against a $3 monthly key budget, ``kill -9`` at a random moment after
the first calls reached the upstream simulator (answers take 0.1-1.5 s), restart on the
same store, wait until no hold is left, drain the budget. Printed per run: upstream calls,
usage records, lost calls (a call with no record: must be 0), phantom records (a
reservation made when the process died, before its call left: charged, never lost),
orphaned reservations charged, the limit, the counter's spend, the records' sum, what the
upstream would bill, overspend.

Soak (SQLite): ``--soak`` requests through one gateway at ``--soak-concurrency``; RSS of the
gateway process after each tenth, latency median/p99 per tenth, and calls == records at the
end. Figures from one run on a shared 2-core machine are comparable only with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.crash import MODEL, WIRE, crash_run, gateway, make_key  # noqa: E402
from tests.support.dynalite import dynalite_command  # noqa: E402
from tests.support.moto_server import AWS_TEST_ENV  # noqa: E402
from tests.support.procs import free_port, port_open, spawn, stop, wait_for  # noqa: E402
from tests.support.upstream import UpstreamSim  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def start_dynalite(tmp: Path):
    port = free_port()
    proc = spawn(dynalite_command(port), log=tmp / "dynalite.log")
    wait_for(lambda: port_open(port), timeout=30, what="dynalite", proc=proc)
    return proc, f"http://127.0.0.1:{port}"


def store_env(kind: str, tmp: Path, dynalite_url: str | None) -> tuple[dict[str, str], int]:
    if kind == "sqlite":
        return {"TIERGATE_STORE": "sqlite", "TIERGATE_DATA_DIR": str(tmp / "data")}, 900
    prefix = "b" + uuid.uuid4().hex[:8]
    env = {**AWS_TEST_ENV, "TIERGATE_STORE": "dynamodb", "TIERGATE_DYNAMODB_ENDPOINT_URL": str(dynalite_url),
           "TIERGATE_DATA_DIR": str(tmp / "data"),
           **{f"TIERGATE_TABLE_{t.upper()}": f"{prefix}-{t}" for t in ("keys", "budgets", "ratelimits", "usage",
                                                                     "idempotency")}}
    return env, 10  # DynamoDB cannot see a dead writer: holds are charged when they expire


def crash_drills(sim: UpstreamSim, stores: list[str], runs: int, requests: int, tmp: Path,
                 dynalite_url: str | None) -> bool:
    print(f"== crash drill: {runs} kill -9 run(s) of {requests} concurrent requests per store, $3 limit")
    ok = True
    rnd = random.Random(13)
    for kind in stores:
        for i in range(runs):
            work = tmp / f"{kind}-{i}"
            work.mkdir(parents=True, exist_ok=True)
            dyn = None
            if kind == "dynamodb":  # a fresh emulator per run (its LevelDB is in memory)
                dyn, dynalite_url = start_dynalite(work)
            try:
                env, ttl = store_env(kind, work, dynalite_url)
                f = crash_run(sim, work / "run", env, store=kind, requests=requests, concurrency=requests,
                              limit_usd=3.0, kill_after_calls=rnd.randint(20, 120), ttl=ttl,
                              kill_delay_s=rnd.uniform(0.1, 1.2), seed=rnd.randint(0, 10**6))
            finally:
                if dyn is not None:
                    stop(dyn)
            good = f.lost == 0 and f.overspend == 0 and f.records == f.calls + f.phantom
            ok &= good
            print(f"run {i + 1}: {f.line()} killed_after_calls={f.killed_after_calls} "
                  f"{'OK' if good else 'FAIL'}", flush=True)
    return ok


#: Requests of the soak whose connection failed (the error of each).
LOST: list[str] = []


async def _tenth(c: httpx.AsyncClient, start: int, per: int, concurrency: int) -> tuple[list[float], int]:
    lat: list[float] = []
    errors = 0
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        nonlocal errors
        async with sem:
            t0 = time.perf_counter()
            try:
                r = await c.post("/v1/chat/completions", json={
                    "model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": f"soak {i}"}]})
            except httpx.HTTPError as e:  # counted (and named at the end), not fatal to the run
                LOST.append(f"{type(e).__name__}: {e}")
                errors += 1
                return
            lat.append((time.perf_counter() - t0) * 1000)
            errors += r.status_code != 200

    await asyncio.gather(*(one(start + i) for i in range(per)))
    return lat, errors


async def _soak_load(url: str, secret: str, n: int, concurrency: int, g, tenths: int = 10) -> list[tuple]:
    rows = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                 headers={"authorization": f"Bearer {secret}"}) as c:
        per = n // tenths
        for t in range(tenths):
            t0 = time.perf_counter()
            lat, errors = await _tenth(c, t * per, per, concurrency)
            wall = time.perf_counter() - t0
            rows.append(((t + 1) * per, g.rss_mb(), statistics.median(lat), pct(lat, 0.99), per / wall, errors))
    return rows


def soak(sim: UpstreamSim, n: int, concurrency: int, tmp: Path) -> bool:
    print(f"== soak: {n} requests at concurrency {concurrency} (SQLite)")
    sim.reset()
    sim.set_default(WIRE, {"content": "ok fine thanks"})
    env, ttl = store_env("sqlite", tmp / "soak", None)
    with gateway(tmp / "soak" / "run", sim, env, ttl=ttl) as g:
        g.start()
        key_id, secret = make_key(g.url, 1e6)
        rss0 = g.rss_mb()
        rows = asyncio.run(_soak_load(g.url, secret, n, concurrency, g))
        print(f"{'requests':>9} {'RSS MB':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'errors':>6}")
        print(f"{0:>9} {rss0:>8.1f}")
        for done, rss, p50, p99, rps, err in rows:
            print(f"{done:>9} {rss:>8.1f} {p50:>8.2f} {p99:>8.2f} {rps:>7.0f} {err:>6}")
        calls = len([r for r in sim.requests(model=WIRE) if r["path"].endswith("/chat/completions")])
        # (GET /v1/usage pages at 10,000 records: count in the SQLite file itself)
        db = sqlite3.connect(tmp / "soak" / "data" / "tiergate.sqlite3")
        recs = db.execute("SELECT COUNT(*) FROM records WHERE tbl = 'usage' AND pk = ?", (key_id,)).fetchone()[0]
        db.close()
        first_tenth = rows[0][1]
        growth = rows[-1][1] - first_tenth
        print(f"RSS: start {rss0:.1f} MB, after the first tenth {first_tenth:.1f} MB, end {rows[-1][1]:.1f} MB, "
              f"peak {max(r[1] for r in rows):.1f} MB; growth after warm-up {growth:+.1f} MB "
              f"(end/first-tenth ratio {rows[-1][1] / first_tenth:.3f})")
        print(f"calls {calls} records {recs} -> {'OK' if calls == recs == n else 'MISMATCH'}")
        if LOST:
            alive = g.proc is not None and g.proc.poll() is None
            print(f"{len(LOST)} request(s) lost their connection (gateway alive: {alive}); first: {LOST[0]}")
            logs = sorted((tmp / "soak" / "run").glob("gateway-*.log"))
            if logs:
                print("gateway log ends:\n" + logs[-1].read_text()[-3000:])
        return calls == recs == n and not LOST


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--stores", default="sqlite,dynamodb")
    ap.add_argument("--soak", type=int, default=20000, help="0 to skip")
    ap.add_argument("--soak-concurrency", type=int, default=50)
    a = ap.parse_args()
    stores = [s for s in a.stores.split(",") if s]
    ok = True
    with tempfile.TemporaryDirectory(prefix="tiergate-crash-") as d:
        tmp = Path(d)
        sim = UpstreamSim.start(log_path=str(tmp / "sim.log"))
        try:
            if a.runs:
                ok &= crash_drills(sim, stores, a.runs, a.requests, tmp, None)
            if a.soak:
                ok &= soak(sim, a.soak, a.soak_concurrency, tmp)
        finally:
            sim.stop()
    print("ALL OK" if ok else "SOME RUN FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Scaling across processes: ``tiergate serve --workers 1`` beside ``--workers 2``, in one run.

    python bench/workers/run.py                 # 4 rounds x 10 s per target (~2 min)
    python bench/workers/run.py --quick         # 1 round x 3 s (smoke)
    python bench/workers/run.py --master        # master key: no budget/rate-limit writes

Starts the shared harness's upstream (``../shared/bench/upstream_sim.py``) and two
gateways with the SQLite store (native adapter, model ``sim``, bench/overhead/catalog.yaml),
one with 1 worker and one with 2, each with its own data dir. Requests carry a virtual
key with a daily budget and an RPM limit (so every request reserves and settles budget and
bumps rate counters in the shared SQLite file; ``--master`` skips that). Then, through the
harness's own wrk driver (``anchor_litellm.measured_wrk``: wrk + wrk_chat.lua at
``-t2 -c16``, CPU of each process tree, the machine's busy CPU, calls the upstream got), it
runs interleaved rounds in rotating order (``benchstats.run_order``) and prints per round
and as medians: req/s, p50/p99 latency, CPU per 1000 requests, how the 2-worker load split
between the workers, and the ratio 2 workers / 1 worker. Goal: >= 1.7x on the 2-core machine
(which also runs wrk and the upstream, and is shared: read the machine-busy column).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: ../shared/bench beside the repository (or beside any ancestor: worktrees live deeper).
SHARED_BENCH = next((p / "shared" / "bench" for p in ROOT.parents if (p / "shared" / "bench").is_dir()),
                    ROOT.parent / "shared" / "bench")
sys.path.insert(0, str(SHARED_BENCH))

from anchor_litellm import Target, measured_wrk, probe  # noqa: E402
from benchproc import Procs, cpu_seconds, port_free, tree_pids, wait_http  # noqa: E402
from benchstats import run_order  # noqa: E402

HOST = "127.0.0.1"
MASTER = "sk-bench-workers"
CATALOG = ROOT / "bench" / "overhead" / "catalog.yaml"  # model sim, native adapter (its upstream port replaced)


def start_gateway(procs: Procs, name: str, workers: int, port: int, run: Path, env: dict, catalog: Path) -> int:
    data = run / f"data-{name}"
    log = run / f"{name}.log"
    argv = [os.environ.get("TIERGATE_PYTHON", sys.executable), "-m", "tiergate.cli", "serve", "--config",
            str(catalog), "--port", str(port), "--workers", str(workers), "--no-access-log"]
    p = procs.start(name, argv, log, env={**env, "TIERGATE_DATA_DIR": str(data), "TIERGATE_STORE": "sqlite"})
    wait_http(f"http://{HOST}:{port}/health", p, 120, log)
    deadline = time.monotonic() + 60  # every worker up (each builds its app after the port is bound)
    while len(worker_pids(p.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    return p.pid


def worker_pids(pid: int) -> list[int]:
    """The processes of a gateway's tree that serve requests: the uvicorn workers (spawned
    children running multiprocessing's spawn_main), or the process itself with one worker."""
    kids = []
    for p in tree_pids(pid)[1:]:
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            kids.append(p)
    return kids or [pid]


def make_key(port: int) -> str:
    """A virtual key whose budget and RPM limit never bind in a run, but are checked and
    charged on every request."""
    body = json.dumps({"tenant": "bench", "daily_budget_usd": 1e6, "monthly_budget_usd": 1e7,
                       "rpm": 10_000_000}).encode()
    req = urllib.request.Request(f"http://{HOST}:{port}/v1/keys", data=body, method="POST",
                                 headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["key"]


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="1 round x 3 s")
    ap.add_argument("--master", action="store_true", help="use the master key (no store writes per request)")
    ap.add_argument("--upstream-port", type=int, default=18090)
    ap.add_argument("--ports", type=int, nargs=2, default=(18091, 18092), help="the two gateways' ports")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.duration = 1, 3
    for port in (a.upstream_port, *a.ports):
        if not port_free(port):
            print(f"port {port} is in use", file=sys.stderr)
            return 2
    run = Path(tempfile.mkdtemp(prefix="tiergate-workers-"))
    catalog = run / "catalog.yaml"
    catalog.write_text(CATALOG.read_text().replace("127.0.0.1:18001/", f"{HOST}:{a.upstream_port}/"))
    env = {**os.environ, "TIERGATE_MASTER_KEY": MASTER, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    procs = Procs()
    try:
        up = procs.start("upstream", [sys.executable, str(SHARED_BENCH / "upstream_sim.py"), "--host", HOST,
                                      "--port", str(a.upstream_port)], run / "upstream.log", env=env)
        wait_http(f"http://{HOST}:{a.upstream_port}/health", up, 30, run / "upstream.log")
        direct = Target("direct", f"http://{HOST}:{a.upstream_port}/v1", "sk-bench", up.pid)
        targets = []
        for (name, workers), port in zip((("1-worker", 1), ("2-workers", 2)), a.ports, strict=True):
            pid = start_gateway(procs, name, workers, port, run, env, catalog)
            key = MASTER if a.master else make_key(port)
            targets.append(Target(name, f"http://{HOST}:{port}/v1", key, pid))
        for t in targets:
            probe(t)
            measured_wrk(t, direct, 2, a.conns, 3)  # warm-up: pools, caches, both workers' connections
        rows = []
        print(f"tiergate --workers 1 vs 2, SQLite store, {'master key' if a.master else 'virtual key with budget + rpm'}, "
              f"wrk -t2 -c{a.conns}, {a.rounds} x {a.duration} s each, interleaved:")
        for rnd in range(a.rounds):
            for t in run_order(targets, rnd):
                workers = worker_pids(t.pid)
                w0 = [cpu_seconds(p) for p in workers]
                _, row = measured_wrk(t, direct, 2, a.conns, a.duration)
                split = [cpu_seconds(p) - c for p, c in zip(workers, w0, strict=True)]
                row |= {"round": rnd, "workers": len(workers), "split": split,
                        "cpu_per_1k": 1000 * row["cpu_s"] / max(1, row["requests"]),
                        "machine_busy": row["machine_cpu_s"] / row["duration_s"]}
                rows.append(row)
                lat = row["lat_us"]
                share = "/".join(f"{100 * s / max(1e-9, sum(split)):.0f}" for s in split)
                print(f"  round {rnd + 1}/{a.rounds} {t.name:10} {row['rps']:8.1f} req/s  p50 {lat['p50'] / 1e3:7.2f} ms"
                      f"  p99 {lat['p99'] / 1e3:7.2f} ms  cpu/1k {row['cpu_per_1k']:5.2f} s  worker split {share:>7}%"
                      f"  machine busy {row['machine_busy']:.2f} cores  errors {row['errors']}+{row['non2xx_3xx']}"
                      f"  upstream {row['upstream_calls']}/{row['requests']}", flush=True)
    finally:
        procs.stop_all()
    one = [r for r in rows if r["target"] == "1-worker"]
    two = [r for r in rows if r["target"] == "2-workers"]
    print("\nmedians:")
    for name, rs in (("1 worker", one), ("2 workers", two)):
        print(f"  {name:10} {med(rs, 'rps'):8.1f} req/s  p50 {statistics.median(r['lat_us']['p50'] for r in rs) / 1e3:7.2f} ms"
              f"  p99 {statistics.median(r['lat_us']['p99'] for r in rs) / 1e3:7.2f} ms"
              f"  cpu/1k {med(rs, 'cpu_per_1k'):5.2f} s  machine busy {med(rs, 'machine_busy'):.2f} cores")
    ratio = med(two, "rps") / med(one, "rps")
    per_round = [t["rps"] / o["rps"] for o, t in zip(one, two, strict=True)]
    print(f"  2 workers / 1 worker req/s = {ratio:.2f}x (per round: {', '.join(f'{x:.2f}' for x in per_round)}); "
          f"goal >= 1.7x: {'met' if ratio >= 1.7 else 'NOT met'}")
    errors = sum(r["errors"] + r["non2xx_3xx"] for r in rows)
    if errors:
        print(f"  WARNING: {errors} failed requests", file=sys.stderr)
    print(f"  logs: {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

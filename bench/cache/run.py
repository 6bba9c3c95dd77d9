"""Exact cache: what a miss adds (lookup + store) and what a hit costs, beside an upstream call.

    python bench/cache/run.py [--n 400] [--rounds 4] [--upstream-delay-ms 0] [--quick]

Uses bench/overhead's harness pieces (``../shared/bench``: its fast upstream
``upstream_sim.py``, ``benchproc`` to start and stop servers by PID, ``benchstats`` for
percentiles and the rotating run order) and ``tiergate serve`` with the overhead
benchmark's route (model ``sim``) plus ``cache: {exact: ...}``, on the embedded SQLite
stores. Four targets, sequential keep-alive requests, one request per target in turn
(the order rotating each round):

* ``direct``: the upstream itself (every request a new question);
* ``bypass``: through the gateway with ``x-tiergate-cache: bypass`` (the whole path
  but the cache lookup and store: the baseline);
* ``miss``: through the gateway, every request a new deterministic question (lookup,
  upstream call, store);
* ``hit``: through the gateway, one question asked again and again (no upstream call).

Printed: median and p99 latency per target, a miss's added latency (miss - bypass), a
hit beside an upstream call (hit / direct, hit / bypass), and the cache step alone in
process (ResponseCache.lookup + keep on the SQLite file: key, lookup, store), which has
no HTTP noise. Checks that the upstream served exactly the direct + bypass + miss calls.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# ../shared/bench beside the checkout (a worktree sits one level deeper: wt/<name>).
SHARED = next((p / "shared" / "bench" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "bench").is_dir()),
              ROOT.parent / "shared" / "bench")
sys.path.insert(0, str(SHARED))
sys.path.insert(0, str(ROOT))

import benchproc  # noqa: E402
import benchstats  # noqa: E402

from tests.support.procs import free_port  # noqa: E402

KEY = "sk-bench-cache"
CATALOG = """
models:
  - name: sim
    model: openai/sim
    adapter: openai-compatible
    tier: 1
    api_base: http://127.0.0.1:{port}/v1
    input_cost_per_mtok: 0.15
    output_cost_per_mtok: 0.60
cache:
  exact: {{ttl_s: 3600}}
"""


class Conn:
    """One keep-alive HTTP/1.1 connection; ``post`` returns (seconds, status, headers)."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port)
        self.path, self.headers = path, {"content-type": "application/json", **headers}

    def reopen(self) -> None:
        """A fresh connection (the server closes idle keep-alive ones after 5 s)."""
        self.c.close()
        self.c = http.client.HTTPConnection("127.0.0.1", self.port)

    def post(self, body: dict) -> tuple[float, int, dict[str, str]]:
        data = json.dumps(body).encode()
        t0 = time.perf_counter()
        self.c.request("POST", self.path, body=data, headers=self.headers)
        r = self.c.getresponse()
        r.read()
        dt = time.perf_counter() - t0
        return dt, r.status, {k.lower(): v for k, v in r.getheaders()}


def body(text: str) -> dict:
    return {"model": "sim", "temperature": 0, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}


def upstream_calls(port: int) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port)
    try:
        c.request("GET", "/health")
        return json.loads(c.getresponse().read())["chat_requests"]
    finally:
        c.close()


async def inproc(n: int, path: Path) -> dict[str, list[float]]:
    """The cache step alone: ResponseCache.lookup + keep on a SQLite file, n new questions."""
    from tiergate.cache.service import ResponseCache
    from tiergate.cache.sqlite import SqliteExactStore
    from tiergate.config.catalog import CatalogFile, resolve
    from tiergate.limits.admission import Principal
    from tiergate.request import GatewayRequest
    from tiergate.routing.plan import RoutePlan

    cat = resolve(CatalogFile.model_validate({"models": [{"name": "sim", "model": "openai/sim", "tier": 1}],
                                               "cache": {"exact": {"ttl_s": 3600}}}))
    cache = ResponseCache(cat.cache, cat.by_id, exact=SqliteExactStore(path))
    spec = cat.models[0]
    plan = RoutePlan("single", "sim", "bench", candidates=(spec,))
    who = Principal("key_bench", "bench")
    answer = {"id": "x", "object": "chat.completion", "model": "sim", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Paris is the capital of France."},
         "finish_reason": "stop"}], "usage": {"prompt_tokens": 12, "completion_tokens": 8, "cost_usd": 0.0001}}
    out: dict[str, list[float]] = {"lookup": [], "keep": [], "step": [], "hit": []}
    for i in range(n + 50):
        req = GatewayRequest.from_chat(body(f"bench question {i}"), aliases={}, default_model="sim")
        t0 = time.perf_counter()
        look = await cache.lookup(req, who, plan)
        t1 = time.perf_counter()
        await cache.keep(look, answer, spec, 0.0001)
        t2 = time.perf_counter()
        again = await cache.lookup(req, who, plan)
        t3 = time.perf_counter()
        assert look.status == "stored" and again.hit, (look.status, again.status)
        if i >= 50:  # warm-up left out
            out["lookup"].append(t1 - t0)
            out["keep"].append(t2 - t1)
            out["step"].append(t2 - t0)
            out["hit"].append(t3 - t2)
    await cache.aclose()
    return out


def ms(xs: list[float]) -> str:
    s = benchstats.summarize(xs)
    return f"median {s['p50'] * 1000:8.3f} ms   p99 {s['p99'] * 1000:8.3f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=400, help="requests per target per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--upstream-delay-ms", type=float, default=0.0)
    ap.add_argument("--quick", action="store_true", help="1 round x 100 requests")
    a = ap.parse_args()
    if a.quick:
        a.n, a.rounds = 100, 1
    work = Path(tempfile.mkdtemp(prefix="tiergate-bench-cache-"))
    up_port, gw_port = free_port(), free_port()
    (work / "catalog.yaml").write_text(CATALOG.format(port=up_port))
    procs = benchproc.Procs()
    py = os.environ.get("TIERGATE_PYTHON", sys.executable)
    try:
        up = procs.start("upstream", [py, str(SHARED / "upstream_sim.py"), "--port", str(up_port),
                                      "--delay-ms", str(a.upstream_delay_ms)], work / "upstream.log")
        benchproc.wait_http(f"http://127.0.0.1:{up_port}/health", up, 30, work / "upstream.log")
        env = {**os.environ, "TIERGATE_MASTER_KEY": KEY, "TIERGATE_DATA_DIR": str(work / "data"),
               "TIERGATE_STORE": "sqlite", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        gw = procs.start("tiergate", [py, "-m", "tiergate.cli", "serve", "--config", str(work / "catalog.yaml"),
                                      "--port", str(gw_port)], work / "tiergate.log", env=env)
        benchproc.wait_http(f"http://127.0.0.1:{gw_port}/health", gw, 60, work / "tiergate.log")
        auth = {"authorization": f"Bearer {KEY}"}
        conns = {"direct": Conn(up_port, "/v1/chat/completions", {}),
                 "bypass": Conn(gw_port, "/v1/chat/completions", {**auth, "x-tiergate-cache": "bypass"}),
                 "miss": Conn(gw_port, "/v1/chat/completions", auth),
                 "hit": Conn(gw_port, "/v1/chat/completions", auth)}
        expect = {"direct": None, "bypass": "bypass", "miss": "stored", "hit": "hit"}
        lat: dict[str, list[float]] = {t: [] for t in conns}
        seq = 0
        hot = body("the one question asked again and again")
        assert conns["miss"].post(hot)[2].get("x-tiergate-cache") == "stored"
        for t in conns:  # warm-up: connections, first-request paths
            for _ in range(30):
                seq += 1
                conns[t].post(hot if t == "hit" else body(f"warm {t} {seq}"))
        calls0 = upstream_calls(up_port)
        sent_upstream = 0
        for rnd in range(a.rounds):
            # One request per target in turn (the order rotating per round): a busy machine's
            # drift falls on every target alike.
            order = benchstats.run_order(list(conns), rnd)
            for _ in range(a.n):
                for t in order:
                    seq += 1
                    dt, status, h = conns[t].post(hot if t == "hit" else body(f"question {t} {seq}"))
                    assert status == 200 and h.get("x-tiergate-cache") == expect[t], (t, status, h)
                    lat[t].append(dt)
                    sent_upstream += t != "hit"
        calls = upstream_calls(up_port) - calls0
        step = asyncio.run(inproc(max(200, a.n), work / "inproc-cache.sqlite3"))
    finally:
        procs.stop_all()

    med = {t: benchstats.summarize(x)["p50"] for t, x in lat.items()}
    p99 = {t: benchstats.summarize(x)["p99"] for t, x in lat.items()}
    print(f"exact cache, {a.rounds} rounds x {a.n} sequential requests per target, upstream delay "
          f"{a.upstream_delay_ms} ms (one run: compare within it)")
    for t in conns:
        print(f"  {t:<7} {ms(lat[t])}")
    print(f"  miss adds (lookup + store) vs bypass:   median {(med['miss'] - med['bypass']) * 1000:+.3f} ms   "
          f"p99 {(p99['miss'] - p99['bypass']) * 1000:+.3f} ms")
    print(f"  gateway adds vs direct (bypass):       median {(med['bypass'] - med['direct']) * 1000:+.3f} ms")
    print(f"  hit / direct upstream call:            median ratio {med['hit'] / med['direct']:.2f}   "
          f"p99 ratio {p99['hit'] / p99['direct']:.2f}")
    print(f"  hit / bypass (gateway + upstream):     median ratio {med['hit'] / med['bypass']:.2f}   "
          f"p99 ratio {p99['hit'] / p99['bypass']:.2f}")
    print("  the cache step alone, in process (SQLite file):")
    for k, label in (("lookup", "key + lookup (miss)"), ("keep", "store"), ("step", "miss total (lookup + store)"),
                     ("hit", "key + lookup (hit)")):
        print(f"    {label:<30} {ms(step[k])}")
    ok = calls == sent_upstream
    print(f"  upstream served {calls} calls for {sent_upstream} non-hit requests: {'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The crash drill: ``kill -9`` a real ``tiergate serve`` under concurrent load against a
small budget, restart it on the same store, drain the budget, and count.

Used by the CI crash test (``tests/faults/test_crash.py``, one short run per store) and by
the long runs in ``bench/crash/run.py`` (3 kill -9 runs of 300 requests, the soak).

What is counted, per run:

* ``calls``: chat requests the upstream simulator received (its log, matched to the
  ledger by the ``x-request-id`` header the gateway sends upstream);
* ``records``: usage records of the key; ``lost``: calls with no record (must be 0);
* ``phantom``: records with no call -- reservations a request had made when the
  process died, before its call left: their outcome was unknown, so they are charged at
  their reservation (conservative, never a lost call);
* ``spent``: the budget counter's spend, and ``recorded``: the records' sum (both must
  stay within ``limit``); ``true``: what the upstream would bill for the calls it got.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.procs import free_port, port_open, spawn, wait_for
from tests.support.upstream import UpstreamSim, build_answer

MASTER = "sk-master-crash"
MODEL = "crashy"
WIRE = "crashy-a"
PRICE_PER_MTOK = 100.0  # $ per 1M tokens, in and out
ANSWER_WORDS = 40       # the simulator's answer: 40 words ~ 50 tokens
MAX_TOKENS = 50

CATALOG = f"""
models:
  - name: {MODEL}
    model: openai/{WIRE}
    adapter: openai-compatible
    api_base: "{{sim}}"
    tier: 1
    input_cost_per_mtok: {PRICE_PER_MTOK}
    output_cost_per_mtok: {PRICE_PER_MTOK}
    max_output_tokens: 256
budgets:
  reservation_ttl_s: {{ttl}}
  orphan_sweep_s: 1
"""


@dataclass
class RunFigures:
    store: str
    requests: int
    calls: int
    records: int
    lost: int
    phantom: int
    orphaned: int
    limit: float
    spent: float
    recorded: float
    true: float
    overspend: float
    killed_after_calls: int
    rss_mb_before_kill: float | None = None

    def line(self) -> str:
        return (f"{self.store:<8} requests={self.requests} calls={self.calls} records={self.records} "
                f"lost={self.lost} phantom={self.phantom} orphaned={self.orphaned} limit=${self.limit:.2f} "
                f"spent=${self.spent:.4f} recorded=${self.recorded:.4f} true=${self.true:.4f} "
                f"overspend=${self.overspend:.4f}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class GatewayProc:
    """``python -m tiergate.cli serve`` as a child process on a free port."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.workdir / f"gateway-{int(time.time() * 1000)}.log"
        try:
            self._start(log)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}; its log ends:\n{log.read_text()[-3000:]}") from None

    def _start(self, log: Path) -> None:
        self.proc = spawn([sys.executable, "-m", "tiergate.cli", "serve", "--config", str(self.workdir / "catalog.yaml"),
                           "--port", str(self.port), "--log-level", "warning"], log=log,
                          env={**self.env, "TIERGATE_MASTER_KEY": MASTER, "TIERGATE_ENVIRONMENT": "test"})
        wait_for(lambda: port_open(self.port) and httpx.get(self.url + "/health", timeout=1).status_code == 200,
                 timeout=60, what="tiergate serve", proc=self.proc)

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def rss_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:  # type: ignore[union-attr]
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except (OSError, AttributeError):
            return None
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


@contextmanager
def gateway(workdir: Path, sim: UpstreamSim, env: dict[str, str], *, ttl: int) -> Iterator[GatewayProc]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "catalog.yaml").write_text(CATALOG.format(sim=sim.openai_base, ttl=ttl))
    g = GatewayProc(workdir, env)
    try:
        yield g
    finally:
        g.stop()


def _admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {MASTER}"}, timeout=30)


def make_key(url: str, limit_usd: float) -> tuple[str, str]:
    # A monthly limit: a daily one would roll over at midnight UTC in the middle of a run.
    r = _admin(url).post("/v1/keys", json={"tenant": "crash", "monthly_budget_usd": limit_usd})
    r.raise_for_status()
    return r.json()["id"], r.json()["key"]


async def fire(url: str, secret: str, n: int, concurrency: int, tag: str) -> dict[str, int]:
    """``n`` chat requests, ``concurrency`` at a time; counts by status (-1: connection lost)."""
    out: dict[str, int] = {}
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                 headers={"authorization": f"Bearer {secret}"}) as c:
        async def one(i: int) -> None:
            async with sem:
                try:
                    r = await c.post("/v1/chat/completions", json={
                        "model": MODEL, "max_tokens": MAX_TOKENS,
                        "messages": [{"role": "user", "content": f"{tag} request {i}: say something"}]})
                    k = str(r.status_code)
                except httpx.HTTPError:
                    k = "lost"
            out[k] = out.get(k, 0) + 1
        await asyncio.gather(*(one(i) for i in range(n)))
    return out


async def drain(url: str, secret: str, *, concurrency: int = 16, max_requests: int = 5000) -> int:
    """Send requests until the budget refuses ``concurrency`` in a row; returns how many."""
    sent = 0
    while sent < max_requests:
        got = await fire(url, secret, concurrency, concurrency, f"drain{sent}")
        sent += concurrency
        if got.get("429", 0) == concurrency:
            return sent
    return sent


def _wait_no_holds(url: str, secret: str, timeout: float) -> None:
    c = httpx.Client(base_url=url, headers={"authorization": f"Bearer {secret}"}, timeout=10)

    def clear() -> bool:
        return all(s["reserved_usd"] == 0 for s in c.get("/v1/budget").json()["scopes"])

    wait_for(clear, timeout=timeout, what="orphaned holds charged")


def key_spent(url: str, secret: str) -> float:
    """The key's monthly budget counter: settled spend (reserved excluded)."""
    data = httpx.get(url + "/v1/budget", headers={"authorization": f"Bearer {secret}"}, timeout=10).json()["scopes"]
    return float(next(s for s in data if s["scope"] == "key" and s["period"] == "month")["spent_usd"])


def true_cost(calls: list[dict[str, Any]]) -> float:
    """What the upstream would bill for the calls it received (its own token counts)."""
    total = 0.0
    for r in calls:
        a = build_answer("openai", WIRE, r["body"], r.get("step") or {})
        total += (a.prompt_tokens + a.completion_tokens) * PRICE_PER_MTOK / 1e6
    return round(total, 9)


def count(sim: UpstreamSim, url: str, key_id: str, secret: str, *, store: str, requests: int, limit: float,
          killed_after: int, rss: float | None) -> RunFigures:
    calls = [r for r in sim.requests(model=WIRE) if r["path"].endswith("/chat/completions")]
    call_ids = {r["headers"].get("x-request-id") for r in calls}
    recs = _admin(url).get("/v1/usage", params={"period": "all", "key_id": key_id, "limit": 10000}).json()["data"]
    rec_ids = {r["request_id"] for r in recs}
    recorded = round(sum(r["cost_usd"] for r in recs), 9)
    spent = key_spent(url, secret)
    true = true_cost(calls)
    return RunFigures(store=store, requests=requests, calls=len(calls), records=len(recs),
                      lost=sum(1 for r in calls if r["headers"].get("x-request-id") not in rec_ids),
                      phantom=sum(1 for r in recs if r["request_id"] not in call_ids),
                      orphaned=sum(1 for r in recs if r["outcome"] == "orphaned"), limit=limit,
                      spent=spent, recorded=recorded, true=true,
                      overspend=round(max(0.0, max(spent, recorded, true) - limit), 9),
                      killed_after_calls=killed_after, rss_mb_before_kill=rss)


def crash_run(sim: UpstreamSim, workdir: Path, env: dict[str, str], *, store: str, requests: int = 300,
              concurrency: int = 300, limit_usd: float = 1.0, kill_after_calls: int = 60, ttl: int = 900,
              kill_delay_s: float = 0.6, seed: int = 13) -> RunFigures:
    """One run: load, kill -9 ``kill_delay_s`` after ``kill_after_calls`` calls reached the
    upstream (answers take 0.1-1.5 s, so some have settled, some are in flight, some are
    being admitted), restart, wait until no hold is left, drain the budget, count."""
    rnd = random.Random(seed)
    sim.reset()
    answer = " ".join(["word"] * ANSWER_WORDS)
    sim.script(WIRE, [{"delay_ms": rnd.uniform(100, 1500), "content": answer} for _ in range(requests)])
    sim.set_default(WIRE, {"delay_ms": 20, "content": answer})
    with gateway(workdir, sim, env, ttl=ttl) as g:
        g.start()
        key_id, secret = make_key(g.url, limit_usd)

        # The killer runs on its own thread: the load's event loop is too busy to keep time.
        box: dict[str, Any] = {}

        def killer() -> None:
            deadline = time.monotonic() + 60
            while len(sim.requests(model=WIRE)) < kill_after_calls and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(kill_delay_s)
            box["rss"] = g.rss_mb()
            g.kill9()

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        asyncio.run(fire(g.url, secret, requests, concurrency, "load"))
        t.join(90)
        rss = box.get("rss")
        killed_after = len(sim.requests(model=WIRE))
        g.start()
        _wait_no_holds(g.url, secret, timeout=ttl + 60)
        asyncio.run(drain(g.url, secret))
        _wait_no_holds(g.url, secret, timeout=30)
        return count(sim, g.url, key_id, secret, store=store, requests=requests, limit=limit_usd,
                     killed_after=killed_after, rss=rss)

"""``tiergate serve --workers 2`` over real HTTP: two processes sharing one SQLite store stay
exact under concurrent clients, as the in-process and multi-process races in test_races.py
do -- no overspend, no hold left, one usage record and one upstream call per admitted
request, a rate limit admitting exactly its N. Both workers must have served."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import free_port, spawn, stop, wait_for
from tiergate.limits.budgets import to_nano

MASTER = "sk-master-workers"
CLIENTS = 200
# $1/M in, $2/M out; ~500 prompt tokens + max 1250 out -> a $0.003 worst-case reservation
PROMPT = "budget " * 330
MAX_OUT = 1250
DAILY = 0.06  # 20 worst-case reservations
CATALOG = """
models:
  - {name: cheap, model: openai/workers-cheap, adapter: openai-compatible, tier: 1, api_base: "%s",
     input_cost_per_mtok: 1, output_cost_per_mtok: 2}
"""


def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes under ``parent`` (multiprocessing spawn children)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) in (parent, *out) and b"spawn_main" in cmd:
            out.append(int(d))
    return out


def cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(stat[11]) + int(stat[12])


@pytest.fixture
def workers(sim, tmp_path) -> Iterator[tuple[str, list[int]]]:
    cfg = tmp_path / "catalog.yaml"
    cfg.write_text(CATALOG % sim.openai_base)
    port = free_port()
    env = {"TIERGATE_MASTER_KEY": MASTER, "TIERGATE_DATA_DIR": str(tmp_path / "data"), "TIERGATE_STORE": "sqlite",
           "TIERGATE_KEY_CACHE_TTL_S": "0.2"}
    proc = spawn([sys.executable, "-m", "tiergate.cli", "serve", "--config", str(cfg), "--port", str(port),
                  "--workers", "2"], log=tmp_path / "serve.log", env=env)
    try:
        wait_for(lambda: len(worker_pids(proc.pid)) == 2 and httpx.get(f"http://127.0.0.1:{port}/health").is_success,
                 timeout=90, what="tiergate serve --workers 2", proc=proc)
        yield f"http://127.0.0.1:{port}", worker_pids(proc.pid)
    finally:
        stop(proc)
        assert not worker_pids(proc.pid)  # the workers went down with the supervisor


def make_key(url: str, **spec) -> tuple[str, str]:
    r = httpx.post(f"{url}/v1/keys", json={"tenant": "race", **spec}, headers={"authorization": f"Bearer {MASTER}"},
                   timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


async def burst(url: str, secret: str, n: int, *, max_tokens: int, text: str) -> list[httpx.Response]:
    """n requests at once, on up to 64 connections (new ones are spread across the workers)."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                 headers={"authorization": f"Bearer {secret}"}) as c:
        body = {"model": "cheap", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
        return await asyncio.gather(*(c.post("/v1/chat/completions", json=body) for _ in range(n)))


def both_served(pids: list[int], before: dict[int, int]) -> bool:
    return all(cpu_ticks(p) - before[p] >= 2 for p in pids)  # >= 20 ms of CPU each


def test_two_workers_never_overspend(workers, sim):
    url, pids = workers
    key_id, secret = make_key(url, daily_budget_usd=DAILY)
    before = {p: cpu_ticks(p) for p in pids}
    responses = asyncio.run(burst(url, secret, CLIENTS, max_tokens=MAX_OUT, text=PROMPT))
    assert both_served(pids, before)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(refused) == CLIENTS, {r.status_code for r in responses}
    assert all(r.json()["error"]["code"] == "budget_exceeded" for r in refused)
    assert len(ok) >= 20  # at least the 20 worst cases fit; settled requests release budget for more
    admitted = {r.headers["x-request-id"] for r in ok}
    assert len(sim.requests(model="workers-cheap")) == len(ok)  # one upstream call per admitted request

    master = {"authorization": f"Bearer {MASTER}"}
    usage = httpx.get(f"{url}/v1/usage", params={"key_id": key_id, "period": "day", "limit": 10_000},
                      headers=master, timeout=10).json()["data"]
    assert {u["request_id"] for u in usage} == admitted and len(usage) == len(ok)
    day = next(b for b in httpx.get(f"{url}/v1/budget", params={"key_id": key_id}, headers=master,
                                    timeout=10).json()["scopes"]
               if b["scope"] == "key" and b["period"] == "day")
    assert day["reserved_usd"] == 0  # every hold settled
    assert day["spent_usd"] <= DAILY  # never overshoots
    assert to_nano(day["spent_usd"]) == sum(to_nano(u["cost_usd"]) for u in usage)


def test_two_workers_rate_limit_admits_exactly_n(workers, sim):
    url, pids = workers
    _, secret = make_key(url, rpm=41)
    left = 60 - time.time() % 60
    if left < 15:  # the burst must fit in one minute window
        time.sleep(left + 0.05)
    before = {p: cpu_ticks(p) for p in pids}
    responses = asyncio.run(burst(url, secret, CLIENTS, max_tokens=5, text="hi"))
    assert both_served(pids, before)
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 41 and codes.count(429) == CLIENTS - 41
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in responses if r.status_code == 429)
    assert len(sim.requests(model="workers-cheap")) == 41


def scrape(url: str) -> dict[str, float]:
    """One Prometheus scrape on a new connection (any worker may answer): sample -> value,
    labels folded in."""
    r = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {MASTER}", "accept": "text/plain"},
                  timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            key = s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items()) if k != "le")
            if "le" not in s.labels:
                assert key not in out, f"{key} twice in one scrape"
                out[key] = s.value
    return out


def test_a_scrape_sees_every_worker(workers):
    """A scrape answered by either worker counts every worker's requests (one set of series,
    each once), and a worker that died keeps its counts; the gauges appear once."""
    url, pids = workers
    _, secret = make_key(url)
    before = {p: cpu_ticks(p) for p in pids}
    n = 120
    responses = asyncio.run(burst(url, secret, n, max_tokens=5, text="hi"))
    assert [r.status_code for r in responses] == [200] * n
    assert both_served(pids, before)
    key = "tiergate_requests_total,model=cheap,outcome=ok,tier=1"
    for _ in range(6):  # new connections: both workers answer some of these scrapes
        got = scrape(url)
        assert got[key] == n
        assert got["tiergate_request_duration_seconds_count,model=cheap,outcome=ok,tier=1"] == n
        assert got["tiergate_tokens_total,model=cheap,tier=1,type=input"] > 0
        assert [v for k, v in got.items() if k.startswith("tiergate_circuit_state,")] == [0]  # once
    os.kill(pids[0], signal.SIGKILL)
    parent = int(Path(f"/proc/{pids[1]}/stat").read_text().rsplit(")", 1)[1].split()[1])
    wait_for(lambda: len(worker_pids(parent)) == 2 and pids[0] not in worker_pids(parent), timeout=60,
             what="a replacement worker")
    wait_for(lambda: httpx.get(f"{url}/health", timeout=5).is_success, timeout=30, what="health")
    for _ in range(4):
        assert scrape(url)[key] == n  # the dead worker's counts were not lost


def test_a_dead_worker_is_replaced(workers):
    url, pids = workers
    os.kill(pids[0], signal.SIGKILL)
    parent = int(Path(f"/proc/{pids[1]}/stat").read_text().rsplit(")", 1)[1].split()[1])
    wait_for(lambda: len(worker_pids(parent)) == 2 and pids[0] not in worker_pids(parent), timeout=60,
             what="a replacement worker")
    wait_for(lambda: httpx.get(f"{url}/health", timeout=5).is_success, timeout=30, what="health")
    r = httpx.post(f"{url}/v1/chat/completions", headers={"authorization": f"Bearer {MASTER}"}, timeout=30,
                   json={"model": "cheap", "messages": [{"role": "user", "content": "still there?"}]})
    assert r.status_code == 200


def test_workers_refuse_a_store_they_cannot_share(tmp_path):
    env = {"TIERGATE_DATA_DIR": str(tmp_path), "TIERGATE_STORE": "memory"}
    out = spawn([sys.executable, "-m", "tiergate.cli", "serve", "--workers", "2", "--port", str(free_port())],
                log=tmp_path / "serve.log", env=env)
    assert out.wait(timeout=60) == 2
    assert "needs a store the processes share" in (tmp_path / "serve.log").read_text()

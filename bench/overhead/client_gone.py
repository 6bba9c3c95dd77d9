"""What the non-streamed disconnect watch costs a cloud request, in one run.

The chat door hands every request a ``client_gone`` watcher factory; only the local
llama-cpp adapter ever awaits it (a cloud request never starts a watcher task). So the
cloud path pays for making one closure per request and carrying it down. Two steps, each
with the watcher ("on") and without it ("off": the door's factory swapped for one that
returns None), interleaved round by round so drift lands on both alike:

* the door: ``chat_request(...)`` for a chat body (what the door does per request);
* end to end: non-streamed ``/v1/chat/completions`` through the real app under uvicorn,
  the native adapter and the upstream simulator (a separate process), on one kept-alive
  connection.

Prints medians and p99 for each side, the difference and the ratio.

    python bench/overhead/client_gone.py [--n 20000] [--requests 400] [--rounds 6]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from starlette.requests import Request  # noqa: E402

from tests.support.gateway import serve_app  # noqa: E402
from tests.support.procs import free_port, wait_for  # noqa: E402
from tiergate.api import doors  # noqa: E402
from tiergate.compose import build_app  # noqa: E402
from tiergate.config import catalog as catalog_mod  # noqa: E402
from tiergate.settings import Settings  # noqa: E402

BODY = {"model": "sim", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
ON = doors.client_gone


def off(request: Request) -> None:  # the door without the watcher
    return None


def stats(us: list[float]) -> tuple[float, float]:
    s = sorted(us)
    return statistics.median(s), s[min(len(s) - 1, int(len(s) * 0.99))]


def report(name: str, on: list[float], off_: list[float], unit: str) -> None:
    (m_on, p_on), (m_off, p_off) = stats(on), stats(off_)
    print(f"{name}: median on {m_on:.2f} {unit} / off {m_off:.2f} {unit} (+{m_on - m_off:.2f}, "
          f"ratio {m_on / m_off:.4f}); p99 on {p_on:.2f} / off {p_off:.2f} (ratio {p_on / p_off:.4f})")


def door_step(services, n: int, rounds: int) -> None:  # type: ignore[no-untyped-def]
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [],
             "query_string": b""}

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    request = Request(scope, receive)
    sides: dict[str, list[float]] = {"on": [], "off": []}
    for r in range(rounds):
        for name, factory in (("on", ON), ("off", off)) if r % 2 == 0 else (("off", off), ("on", ON)):
            doors.client_gone = factory  # type: ignore[assignment]
            batch = 200
            for _ in range(n // batch):
                t = time.perf_counter()
                for _ in range(batch):
                    doors.chat_request(services, request, BODY)
                sides[name].append((time.perf_counter() - t) / batch * 1e6)
    doors.client_gone = ON
    report("door (chat_request) per request", sides["on"], sides["off"], "us")


def http_step(url: str, requests: int, rounds: int) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    payload = json.dumps(BODY)
    hdrs = {"content-type": "application/json"}

    def once() -> float:
        t = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", payload, hdrs)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        return (time.perf_counter() - t) * 1000

    for _ in range(50):
        once()
    sides: dict[str, list[float]] = {"on": [], "off": []}
    for r in range(rounds):
        for name, factory in (("on", ON), ("off", off)) if r % 2 == 0 else (("off", off), ("on", ON)):
            doors.client_gone = factory  # type: ignore[assignment]
            sides[name] += [once() for _ in range(requests)]
    doors.client_gone = ON
    report("end to end (non-streamed, cloud upstream)", sides["on"], sides["off"], "ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=6)
    a = ap.parse_args()
    port = free_port()
    sim = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "upstream.py"), "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _up(port), timeout=20, what="upstream simulator", proc=sim)
        catalog = catalog_mod.parse(
            "models:\n  - {name: sim, model: openai/sim, adapter: openai-compatible, tier: 1, "
            f"api_base: 'http://127.0.0.1:{port}/v1', input_cost_per_mtok: 0.15, output_cost_per_mtok: 0.6}}\n",
            source="bench")
        data = Path(tempfile.mkdtemp(prefix="tg-bench-gone-"))
        app = build_app(Settings(environment="test", data_dir=data, store="memory"), catalog)
        door_step(app.state.services, a.n, a.rounds)
        with serve_app(app) as url:
            http_step(url, a.requests, a.rounds)
    finally:
        sim.terminate()
        sim.wait(10)


def _up(port: int) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/v1/models")
        return c.getresponse().status == 200
    except OSError:
        return False

if __name__ == "__main__":
    main()

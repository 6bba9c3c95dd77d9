"""uvicorn's httptools protocol beside tiergate's (a sized response's head and body in one
write, :mod:`tiergate.cli.http_protocol`), serving the same tiny JSON app, in one run.

Two uvicorn servers (one process each), wrk taking turns on them (``--rounds`` x
``--duration`` s, 16 connections, then 1): req/s, and CPU-seconds per 1000 requests of
each server process (from /proc); medians over the rounds and the ratio new/base.
Only the HTTP layer: no gateway, no upstream. Needs wrk.

    PYTHONPATH=functions:edge python3 bench/overhead/http_writes.py [--rounds 3 --duration 3]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

BODY = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",' \
       b'"content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}'


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def serve(port: int, coalescing: bool) -> None:
    import uvicorn

    http: object = "httptools"
    if coalescing:
        from tiergate.cli.http_protocol import CoalescingHttpToolsProtocol

        http = CoalescingHttpToolsProtocol
    uvicorn.run(app, host="127.0.0.1", port=port, http=http, loop="uvloop", log_level="warning",  # type: ignore[arg-type]
                access_log=False)


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, conns: int, duration: int) -> float:
    out = subprocess.run(["wrk", f"-t{min(conns, 2)}", f"-c{conns}", f"-d{duration}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--serve", choices=["base", "new"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=18091, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.port, a.serve == "new")
        return 0
    procs = {name: subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(18091 + i)],
                                    start_new_session=True) for i, name in enumerate(("base", "new"))}
    ports = {"base": 18091, "new": 18092}
    try:
        for port in ports.values():
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
        for conns in (16, 1):
            rps: dict[str, list[float]] = {n: [] for n in ports}
            cpu: dict[str, list[float]] = {n: [] for n in ports}
            for r in range(a.rounds):
                for name in (("base", "new") if r % 2 == 0 else ("new", "base")):
                    before = cpu_s(procs[name].pid)
                    v = wrk(ports[name], conns, a.duration)
                    rps[name].append(v)
                    cpu[name].append((cpu_s(procs[name].pid) - before) / (v * a.duration) * 1000)
            m = {n: (statistics.median(rps[n]), statistics.median(cpu[n])) for n in ports}
            print(f"-c{conns:<3} uvicorn httptools {m['base'][0]:8.0f} req/s {m['base'][1]:.3f} CPU-s/1000   "
                  f"coalescing {m['new'][0]:8.0f} req/s {m['new'][1]:.3f} CPU-s/1000   "
                  f"ratio req/s {m['new'][0] / m['base'][0]:.3f}x CPU {m['new'][1] / m['base'][1]:.3f}x")
    finally:
        for p in procs.values():
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The cost of the ASGI layers in front of a door, in process (no sockets, no upstream).

The same two doors -- a JSON answer and a 50-chunk event stream -- mounted on a plain
FastAPI app (every request through its middleware stack and router) and on
:class:`tiergate.api.app.GatewayApp` (a door's POST answered before them), called directly
through ASGI, taking turns. Prints each path's median microseconds per request over 5
rounds, the difference and the ratio.

    PYTHONPATH=functions:edge python3 bench/overhead/dispatch.py
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from tiergate.api import errors
from tiergate.api.app import GatewayApp
from tiergate.api.responses import JSONResponse
from tiergate.api.sse_response import EventStreamResponse

ROUNDS, CALLS = 5, 1000


async def _json(request: Request) -> Response:
    await request.body()
    return JSONResponse({"ok": True})


async def _chunks():  # type: ignore[no-untyped-def]
    for _ in range(50):
        yield b"data: x\n\n"


async def _stream(request: Request) -> Response:
    return EventStreamResponse(_chunks())


DOORS = {"/v1/chat/completions": _json, "/v1/stream": _stream}


def build(cls: type[FastAPI]) -> FastAPI:
    app = cls()
    errors.install(app)
    for path, door in DOORS.items():
        app.add_route(path, door, methods=["POST"])
    if isinstance(app, GatewayApp):
        app.doors = dict(DOORS)
    return app


async def per_call_us(app: FastAPI, path: str, n: int) -> float:
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
                             "root_path": "", "query_string": b"", "headers": [(b"content-type", b"application/json")],
                             "http_version": "1.1", "scheme": "http", "client": ("127.0.0.1", 1),
                             "server": ("127.0.0.1", 2), "asgi": {"version": "3.0"}, "state": {}}

    async def send(message: Any) -> None:
        return None

    times = []
    for _ in range(n):
        messages = iter([{"type": "http.request", "body": b"{}", "more_body": False}])
        never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def receive(messages: Any = messages, never: asyncio.Future[Any] = never) -> Any:
            m = next(messages, None)
            return m if m is not None else await never  # the client stays: no disconnect

        t = time.perf_counter()
        await app(dict(scope), receive, send)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


async def main() -> None:
    ordinary, shortcut = build(FastAPI), build(GatewayApp)
    for app in (ordinary, shortcut):
        await per_call_us(app, "/v1/chat/completions", 200)  # warm up
    for path in DOORS:
        a, b = [], []
        for _ in range(ROUNDS):
            a.append(await per_call_us(ordinary, path, CALLS))
            b.append(await per_call_us(shortcut, path, CALLS))
        fa, fb = statistics.median(a), statistics.median(b)
        print(f"{path:22s} FastAPI stack {fa:6.1f} us   GatewayApp {fb:6.1f} us   saved {fa - fb:5.1f} us"
              f"   ratio {fb / fa:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())

"""Cloud reachability against a real loopback server that we stop and start again."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

from tests.edge.conftest import start_app
from tests.support.procs import free_port
from tiergate_edge.connectivity import CloudHealth


def health_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    return app


async def test_probe_marks_up_then_down_then_recovers_within_seconds() -> None:
    port = free_port()
    url, server, thread = start_app(health_app(), port)
    recovered: list[float] = []
    async with httpx.AsyncClient() as client:
        h = CloudHealth(url, client, interval_s=0.3, timeout_s=0.5, backoff_min_s=0.1, backoff_max_s=0.4)

        async def note() -> None:
            recovered.append(time.monotonic())

        h.on_recovery(note)
        await h.start()
        try:
            assert h.state == "up" and len(recovered) == 1
            server.should_exit = True
            thread.join(10)
            for _ in range(100):
                if h.state == "down":
                    break
                await asyncio.sleep(0.05)
            assert h.state == "down" and h.last_error
            restarted = time.monotonic()
            _, server, thread = start_app(health_app(), port)
            for _ in range(100):
                if h.state == "up":
                    break
                await asyncio.sleep(0.05)
            assert h.state == "up" and len(recovered) == 2
            assert recovered[1] - restarted < 2.0          # recovery noticed within seconds
        finally:
            await h.stop()
            server.should_exit = True
            thread.join(10)


async def test_mark_down_is_immediate_and_backoff_grows_to_a_cap() -> None:
    async with httpx.AsyncClient() as client:
        h = CloudHealth(f"http://127.0.0.1:{free_port()}", client, interval_s=10, timeout_s=0.2,
                        backoff_min_s=0.5, backoff_max_s=2.0)
        h.state = "up"
        h.mark_down("connect refused")
        assert h.state == "down" and h.last_error == "connect refused"
        delays = []
        for _ in range(5):
            assert await h.probe_once() is False
            delays.append(h.next_delay())
        assert delays == sorted(delays) and delays[-1] == 2.0 and delays[0] < 2.0


async def test_unconfigured_cloud_is_down_and_never_probed() -> None:
    async with httpx.AsyncClient() as client:
        h = CloudHealth(None, client)
        await h.start()
        assert h.state == "down" and not h.configured and h.last_probe is None
        h.mark_down("x")
        assert h.failures == 0

"""Cloud reachability: a health probe with backoff, and an instant mark-down.

While the cloud is up it is probed every ``interval``; once down, the probe retries
after ``backoff_min`` doubling to ``backoff_max``, so its return is noticed within
seconds. An offload that fails at connect time calls :meth:`CloudHealth.mark_down`,
which flips the state at once (the next request goes local or defers) and wakes the
probe loop. Listeners registered with :meth:`on_recovery` run on each down -> up
transition (queue drain, usage sync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import httpx

from tiergate_edge.background import stop_task

log = logging.getLogger("tiergate.edge.connectivity")

State = Literal["unknown", "up", "down"]


class CloudHealth:
    def __init__(self, base_url: str | None, client: httpx.AsyncClient, *, interval_s: float = 15.0,
                 timeout_s: float = 2.0, backoff_min_s: float = 0.5, backoff_max_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self._client = client
        self._interval = interval_s
        self._timeout = timeout_s
        self._bmin = backoff_min_s
        self._bmax = backoff_max_s
        self.state: State = "unknown" if base_url else "down"
        self.failures = 0
        self.last_error: str | None = None if base_url else "no cloud configured"
        self.last_change = time.time()
        self.last_probe: float | None = None
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], Awaitable[None]]] = []

    @property
    def configured(self) -> bool:
        return self.base_url is not None

    @property
    def is_up(self) -> bool:
        return self.state == "up"

    def on_recovery(self, fn: Callable[[], Awaitable[None]]) -> None:
        self._listeners.append(fn)

    def info(self) -> dict[str, object]:
        return {"configured": self.configured, "url": self.base_url, "state": self.state,
                "consecutive_failures": self.failures, "last_error": self.last_error,
                "last_change": self.last_change, "last_probe": self.last_probe}

    def mark_down(self, reason: str) -> None:
        """Called by the offload path on a connect failure: takes effect immediately."""
        if not self.configured:
            return
        self.failures += 1
        self.last_error = reason
        if self.state != "down":
            log.warning("cloud marked down: %s", reason)
            self.state, self.last_change = "down", time.time()
        self._kick.set()

    def next_delay(self) -> float:
        if self.state == "up":
            return self._interval
        return min(self._bmax, self._bmin * (2 ** max(0, self.failures - 1)))

    async def probe_once(self) -> bool:
        """One GET ``/health``; 2xx is up, anything else (connect error, timeout, 5xx) is down."""
        if not self.configured:
            return False
        self.last_probe = time.time()
        try:
            r = await self._client.get(f"{self.base_url}/health", timeout=self._timeout)
            ok, err = r.status_code < 500, f"health returned {r.status_code}"
        except httpx.HTTPError as e:
            ok, err = False, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        await self._record(ok, err)
        return ok

    async def _record(self, ok: bool, err: str) -> None:
        was = self.state
        if ok:
            self.failures, self.last_error = 0, None
            if was != "up":
                self.state, self.last_change = "up", time.time()
                log.info("cloud is up")
                await self._notify()
        else:
            self.failures += 1
            self.last_error = err
            if was != "down":
                self.state, self.last_change = "down", time.time()

    async def _notify(self) -> None:
        for fn in list(self._listeners):
            try:
                await fn()
            except Exception:  # a listener's failure must not stop the probe loop
                log.exception("recovery listener failed")

    async def _loop(self) -> None:
        while True:
            delay = self.next_delay()
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=delay)
                # Kicked by mark_down: wait the short backoff, not the long interval.
                await asyncio.sleep(self.next_delay())
            await self.probe_once()

    async def start(self) -> None:
        """One probe now (so the first request sees a real state), then the loop."""
        if not self.configured or self._task is not None:
            return
        await self.probe_once()
        self._task = asyncio.create_task(self._loop(), name="tiergate-cloud-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

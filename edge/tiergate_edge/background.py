"""Background work of the agent: a step run when woken or every interval, in one task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class WakeLoop:
    """Runs ``step`` whenever :meth:`wake` is called and at least every ``interval_s``.
    A failing step is logged and tried again on the next wake: the work it stands for is
    durable (SQLite), so nothing is lost by waiting."""

    def __init__(self, name: str, step: Callable[[], Awaitable[Any]], *, interval_s: float,
                 log: logging.Logger) -> None:
        self._name, self._step, self._interval, self._log = name, step, interval_s, log
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                await self._step()
            except Exception:
                self._log.exception("%s failed", self._name)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

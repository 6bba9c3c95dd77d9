"""The agent's state over time for the dashboard's edge view: one sample of the status
(queue depth, unsynced usage and its age, cloud reachability) every interval, the last
``keep`` in memory (an hour at the defaults)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from tiergate_edge.background import WakeLoop

log = logging.getLogger("tiergate.edge.history")


class StatusHistory:
    def __init__(self, sample: Callable[[], Mapping[str, Any]], *, interval_s: float = 10.0,
                 keep: int = 360) -> None:
        self._sample = sample
        self._samples: deque[dict[str, Any]] = deque(maxlen=keep)
        self._loop = WakeLoop("edge status history", self._step, interval_s=interval_s, log=log)

    async def _step(self) -> None:
        self.record()

    def record(self) -> None:
        self._samples.append({"ts": time.time(), **self._sample()})

    def samples(self) -> list[Mapping[str, Any]]:
        return list(self._samples)

    def start(self) -> None:
        self.record()  # one sample at once: the view has a point from the start
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

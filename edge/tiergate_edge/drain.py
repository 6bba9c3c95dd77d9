"""Drain the deferred-job queue to the cloud when it is reachable.

One loop per process, woken by a recovery of the cloud, by a new job, or every
``poll_s``. A job goes to the cloud with its idempotency key; the result is recorded
with a conditional transition (see :mod:`tiergate_edge.jobs`). A connect failure marks
the cloud down and puts the job back; a 4xx other than 408/409/429 is the request's own
fault and fails the job for good; anything else is retried later.
"""

from __future__ import annotations

import asyncio
import logging

from tiergate_edge.background import WakeLoop
from tiergate_edge.cloud_client import CloudClient, CloudUnreachable
from tiergate_edge.connectivity import CloudHealth
from tiergate_edge.jobs import Job, JobQueue

log = logging.getLogger("tiergate.edge.drain")

_RETRY_STATUSES = {408, 409, 425, 429}


class Drainer:
    def __init__(self, queue: JobQueue, cloud: CloudClient, health: CloudHealth, *,
                 concurrency: int = 2, lease_s: float = 300.0, poll_s: float = 5.0) -> None:
        self.queue = queue
        self._cloud = cloud
        self._health = health
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._runner = WakeLoop("tiergate-queue-drain", self.drain_once, interval_s=poll_s, log=log)
        self.completed = 0

    def kick(self) -> None:
        self._runner.wake()

    async def on_recovery(self) -> None:  # CloudHealth listener
        self.kick()

    async def drain_once(self) -> int:
        """Drain until the queue is empty or the cloud goes down; returns jobs finished."""
        done = 0
        while self._health.is_up:
            jobs = await self.queue.claim(lease_s=self._lease_s, limit=self._concurrency)
            if not jobs:
                break
            results = await asyncio.gather(*(self._run(j) for j in jobs))
            done += sum(results)
            if not all(results) and not self._health.is_up:
                break
        return done

    async def _run(self, job: Job) -> bool:
        try:
            status, data = await self._cloud.chat(job.body, idempotency_key=job.idem_key)
        except CloudUnreachable as e:
            self._health.mark_down(f"drain: {e}")
            await self.queue.release(job.id, {"message": str(e), "type": "api_error", "code": "cloud_unreachable"})
            return False
        if 200 <= status < 300:
            ok = await self.queue.complete(job.id, data, status)
            self.completed += ok
            return ok
        err = data.get("error") if isinstance(data, dict) else None
        err = err if isinstance(err, dict) else {"message": str(data)[:500], "type": "api_error"}
        if 400 <= status < 500 and status not in _RETRY_STATUSES:
            await self.queue.fail(job.id, err, status)
            return True
        await self.queue.release(job.id, err)
        return False

    async def start(self) -> None:
        if not self._runner.running:
            recovered = await self.queue.recover()
            if recovered:
                log.info("requeued %d job(s) left running by a previous process", recovered)
            self._runner.start()
            self.kick()

    async def stop(self) -> None:
        await self._runner.stop()

"""Drain the deferred-job queue to the cloud when it is reachable.

One loop per process, woken by a recovery of the cloud, by a new job, or every
``poll_s``. A job goes to the cloud with its idempotency key; the result is recorded
with a conditional transition (see :mod:`tiergate_edge.jobs`). A connect failure marks
the cloud down and puts the job back; a 4xx other than 408/409/429 is the request's own
fault and fails the job for good; anything else (a 409 because the cloud still holds
the job's idempotency lease, a 429, a 5xx) is retried later, after a per-job backoff
with full jitter, so a job the cloud keeps refusing is neither retried in a tight loop
nor in the way of the jobs behind it. ``concurrency`` workers each take one job at a
time: a slow job holds up only its own worker.
"""

from __future__ import annotations

import asyncio
import logging
import random

from tiergate_edge.background import WakeLoop
from tiergate_edge.cloud_client import CloudClient, CloudUnreachable
from tiergate_edge.connectivity import CloudHealth
from tiergate_edge.jobs import Job, JobQueue

log = logging.getLogger("tiergate.edge.drain")

_RETRY_STATUSES = {408, 409, 425, 429}


class Drainer:
    def __init__(self, queue: JobQueue, cloud: CloudClient, health: CloudHealth, *,
                 concurrency: int = 2, lease_s: float = 300.0, poll_s: float = 5.0,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0, rng: random.Random | None = None) -> None:
        self.queue = queue
        self._cloud = cloud
        self._health = health
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._base, self._cap = backoff_base_s, backoff_max_s
        self._rng = rng or random.Random()
        #: Attempts sent to the cloud (for tests and the health view).
        self.attempts = 0
        self._runner = WakeLoop("tiergate-queue-drain", self.drain_once, interval_s=poll_s, log=log)
        self.completed = 0

    def kick(self) -> None:
        self._runner.wake()

    async def on_recovery(self) -> None:  # CloudHealth listener
        self.kick()

    def backoff_s(self, attempts: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempts-1))]."""
        return self._rng.uniform(0, min(self._cap, self._base * 2 ** max(0, attempts - 1)))

    async def drain_once(self) -> int:
        """Drain what is due until the queue has nothing due or the cloud goes down; returns
        jobs finished. Jobs backing off are left for a later round."""
        done = 0

        async def worker() -> None:
            nonlocal done
            while self._health.is_up:
                jobs = await self.queue.claim(lease_s=self._lease_s, limit=1)
                if not jobs:
                    return
                finished = await self._run(jobs[0])  # (not `done += await ...`: workers interleave)
                done += finished

        await asyncio.gather(*(worker() for _ in range(self._concurrency)))
        return done

    async def _run(self, job: Job) -> bool:
        self.attempts += 1
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
        await self.queue.release(job.id, err, delay_s=self.backoff_s(job.attempts))
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

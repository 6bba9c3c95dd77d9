"""A circuit breaker per deployment.

closed --(N consecutive failures)--> open --(cooldown elapsed)--> half-open
half-open admits exactly one probe: success closes the circuit, failure re-opens it.
Only failures that say something about the deployment's health count
(``GatewayError.counts_against_deployment``): a provider's 429 or our bad request do not.
State is per process (each Lambda instance / worker learns on its own), by design: it
is a fast local reflex, not a shared truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class _Circuit:
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probe_in_flight: bool = False
    total_failures: int = 0
    total_successes: int = 0


class CircuitBoard:
    def __init__(self, *, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_s
        self._clock = clock
        self._c: dict[str, _Circuit] = {}

    def _get(self, deployment_id: str) -> _Circuit:
        c = self._c.get(deployment_id)
        if c is None:
            c = self._c[deployment_id] = _Circuit()
        return c

    def state(self, deployment_id: str) -> State:
        c = self._c.get(deployment_id)
        if c is None:
            return "closed"
        if c.state == "open" and self._clock() - c.opened_at >= self._cooldown:
            return "half_open"
        return c.state

    def is_open(self, deployment_id: str) -> bool:
        """True while calls must not be sent (open, or half-open with its probe taken)."""
        st = self.state(deployment_id)
        return st == "open" or (st == "half_open" and self._get(deployment_id).probe_in_flight)

    def try_acquire(self, deployment_id: str) -> bool:
        """May a call be sent now? In half-open, the first caller becomes the probe."""
        st = self.state(deployment_id)
        if st == "closed":
            return True
        if st == "open":
            return False
        c = self._get(deployment_id)
        if c.probe_in_flight:
            return False
        c.state, c.probe_in_flight = "half_open", True
        return True

    def record_success(self, deployment_id: str) -> None:
        c = self._get(deployment_id)
        c.state, c.failures, c.probe_in_flight = "closed", 0, False
        c.total_successes += 1

    def record_failure(self, deployment_id: str) -> None:
        c = self._get(deployment_id)
        c.total_failures += 1
        c.failures += 1
        if c.state == "half_open" or c.failures >= self._threshold:
            c.state, c.opened_at, c.probe_in_flight = "open", self._clock(), False

    def release(self, deployment_id: str) -> None:
        """A probe ended without a verdict (e.g. a provider 429): let another probe try."""
        c = self._c.get(deployment_id)
        if c is not None and c.state == "half_open":
            c.probe_in_flight = False
            c.state, c.opened_at = "open", self._clock() - self._cooldown

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {
            d: {"state": self.state(d), "consecutive_failures": c.failures,
                "failures": c.total_failures, "successes": c.total_successes}
            for d, c in self._c.items()
        }

import random

from tiergate.execution.backoff import full_jitter, retry_delay
from tiergate.execution.circuit import CircuitBoard


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_circuit_state_machine():
    clock = Clock()
    cb = CircuitBoard(threshold=2, cooldown_s=10, clock=clock)
    assert cb.try_acquire("d")
    cb.record_failure("d")
    assert cb.state("d") == "closed"
    cb.record_failure("d")
    assert cb.state("d") == "open" and not cb.try_acquire("d")
    clock.t = 10
    assert cb.state("d") == "half_open"
    assert cb.try_acquire("d")          # the one probe
    assert not cb.try_acquire("d")      # nobody else while it runs
    cb.record_failure("d")              # probe failed: open again, cooldown restarts
    assert cb.state("d") == "open"
    clock.t = 20
    assert cb.try_acquire("d")
    cb.record_success("d")
    assert cb.state("d") == "closed" and cb.snapshot()["d"]["successes"] == 1


def test_released_probe_lets_another_probe_through():
    clock = Clock()
    cb = CircuitBoard(threshold=1, cooldown_s=5, clock=clock)
    cb.record_failure("d")
    clock.t = 5
    assert cb.try_acquire("d")
    cb.release("d")
    assert cb.try_acquire("d")


def test_full_jitter_bounds_and_retry_after_floor():
    rng = random.Random(1)
    delays = [full_jitter(n, base=0.5, cap=4, rng=rng) for n in (1, 2, 3, 4, 5, 6) for _ in range(50)]
    assert all(0 <= d <= 4 for d in delays) and max(delays) > 2
    assert retry_delay(1, 3.0, base=0.5, cap=4, rng=rng) >= 3.0

"""What a failed attempt may have cost: was the request sent, and is its outcome known?

A reservation is released only when no provider could have billed, and charged in full
when nobody knows. Per attempt:

* **not sent** -- an open circuit, a connect failure (:class:`UpstreamUnavailable` with no
  upstream status): nothing reached a provider; no usage record.
* **known** -- the provider answered with an error status (4xx/5xx): it was called and
  bills nothing; a usage record with cost 0.
* **unknown** -- sent, and then the answer was lost: a timeout, a connection cut after
  sending, a 2xx body we could not read, our own bug or a cancellation while the call
  was in flight. The provider may have generated (and billed) the whole answer, so the
  attempt is charged at its reservation, the worst case it was admitted for.

A stream that breaks off after its first chunk is billed for what it produced (the
gateway's chunk loop counts it); that is not decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate.errors import (
    GatewayError,
    StreamInterrupted,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)


def attempt_verdict(err: BaseException) -> tuple[bool, bool]:
    """``(sent, unknown)`` for an exception raised by one attempt."""
    if not isinstance(err, GatewayError):
        return True, True  # cancelled or crashed mid-call: it may have been sent
    status = err.details.get("upstream_status")
    if isinstance(err, UpstreamUnavailable) and status is None:
        return False, False
    if isinstance(err, UpstreamTimeout | StreamInterrupted):
        return True, True
    if isinstance(status, int):
        return True, status < 400  # an error status is a known answer; a broken 2xx is not
    if isinstance(err, UpstreamError):
        return True, True  # a transport failure after the connection was made
    return False, False  # our own refusal before any call (no route, deadline, ...)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The whole request's: did any attempt reach a provider, and how many were unknown."""

    upstream_called: bool
    unknown_attempts: int
    code: str

    @property
    def unknown(self) -> bool:
        return self.unknown_attempts > 0


def request_verdict(err: BaseException | None, attempts: list, in_flight: bool) -> Verdict:
    """From the attempts the executor recorded (``sent``/``unknown`` on each) and whether
    an attempt was still in flight when ``err`` was raised."""
    sent = any(a.sent for a in attempts) or in_flight
    unknown = sum(1 for a in attempts if a.unknown) + (1 if in_flight else 0)
    code = err.code if isinstance(err, GatewayError) and err.code else (
        "cancelled" if err is not None and not isinstance(err, Exception) else "internal_error")
    return Verdict(sent, unknown, code or "internal_error")

"""Requests- and tokens-per-minute limits per key and per deployment.

A sliding one-minute window, approximated the usual way from two fixed windows: one
counter per (subject, kind, minute) in the ``ratelimits`` table, with a TTL; a request
counts against ``used(this minute) + used(last minute) x (the share of last minute still
inside the sliding window)``. Fixed windows alone let twice the limit through around a
minute boundary (a full burst at 0:59, another at 1:00); this does not. A request adds 1
to each RPM counter and its worst-case tokens (prompt + max output) to each TPM counter,
each guarded by ``used + previous share <= limit - amount`` -- still one store round trip
(SQLite: the same transaction reads the previous minute; DynamoDB: it is read in
parallel with the add, and an add that went over is undone). Settlement corrects TPM by
the actual tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate.errors import RateLimited
from tiergate.stores.base import Bump, CounterKey

WINDOW_S = 60
TABLE = "ratelimits"


@dataclass(frozen=True, slots=True)
class RateCheck:
    subject: str          # "key" | "deployment"
    subject_id: str
    kind: str             # "requests" | "tokens"
    limit: int
    amount: int
    window_start: int

    @property
    def key(self) -> CounterKey:
        short = "req" if self.kind == "requests" else "tok"
        return CounterKey(TABLE, f"rl#{self.subject}#{self.subject_id}#{short}", str(self.window_start))

    @property
    def window_end(self) -> int:
        return self.window_start + WINDOW_S

    @property
    def prev_key(self) -> CounterKey:
        return CounterKey(self.key.table, self.key.pk, str(self.window_start - WINDOW_S))

    def bump(self, now: float) -> Bump:
        # The share of the previous minute still inside the sliding window ending now.
        weight = max(0.0, min(1.0, 1.0 - (now - self.window_start) / WINDOW_S))
        return Bump(self.key, self.amount, self.limit - self.amount, self.window_end + WINDOW_S,
                    prev_key=self.prev_key, prev_weight=weight)


def checks(*, key_id: str, key_rpm: int | None, key_tpm: int | None, deployment_id: str,
           dep_rpm: int | None, dep_tpm: int | None, tokens: int, now: float) -> list[RateCheck]:
    """The counters one request must pass (key limits first: they name the caller)."""
    start = int(now) // WINDOW_S * WINDOW_S
    out: list[RateCheck] = []
    for subject, sid, rpm, tpm in (("key", key_id, key_rpm, key_tpm),
                                   ("deployment", deployment_id, dep_rpm, dep_tpm)):
        if rpm is not None:
            out.append(RateCheck(subject, sid, "requests", rpm, 1, start))
        if tpm is not None:
            out.append(RateCheck(subject, sid, "tokens", tpm, tokens, start))
    for c in out:
        if c.amount > c.limit:
            raise RateLimited(
                f"Request needs {c.amount} tokens, more than the {c.subject} limit of {c.limit} "
                "tokens per minute; lower max_tokens or the prompt",
                retry_after=WINDOW_S, code="tokens_exceed_limit", scope=c.subject, kind=c.kind, limit=c.limit)
    return out


def _reset(seconds: float) -> str:
    """OpenAI's duration style: ``"1s"``, ``"59s"``, ``"1m0s"``."""
    s = max(1, int(seconds + 0.999))
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


def headers(cs: list[RateCheck], used: dict[RateCheck, int], now: float) -> dict[str, str]:
    """``x-ratelimit-*`` for the tightest requests and tokens limits (key limits win ties)."""
    out: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        mine = [c for c in cs if c.kind == kind and c in used]
        if not mine:
            continue
        c = min(mine, key=lambda c: (c.limit - used[c], c.subject != "key"))
        out[f"x-ratelimit-limit-{kind}"] = str(c.limit)
        out[f"x-ratelimit-remaining-{kind}"] = str(max(0, c.limit - used[c]))
        out[f"x-ratelimit-reset-{kind}"] = _reset(c.window_end - now)
    return out


def rejected(c: RateCheck, now: float) -> RateLimited:
    """The 429 for a failed check: ``Retry-After`` is the end of the window."""
    retry = max(0.001, c.window_end - now)
    hdrs = headers([c], {c: c.limit}, now)
    who = "this API key" if c.subject == "key" else f"deployment {c.subject_id}"
    return RateLimited(
        f"Rate limit reached for {who}: {c.limit} {c.kind} per minute. Retry in {_reset(retry)}.",
        retry_after=retry, headers=hdrs, scope=c.subject, kind=c.kind, limit=c.limit)

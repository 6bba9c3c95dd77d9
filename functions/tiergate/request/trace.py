"""The W3C Trace Context a caller sent (``traceparent``, ``tracestate``), checked at the door.

The gateway's request span (:mod:`tiergate.observe.otel`) is made a child of the caller's
span when the caller sent a valid ``traceparent``, so a trace started in the client (an
agent, a service behind its own OpenTelemetry SDK) continues through the gateway. A header
that does not parse is ignored, as the spec says (the request starts a new trace); it never
fails the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# version-traceid-parentid-flags (https://www.w3.org/TR/trace-context/#traceparent-header).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
#: The spec bounds tracestate at 32 list members; a longer header is cut, not trusted.
_MAX_TRACESTATE = 512


@dataclass(frozen=True, slots=True)
class TraceParent:
    traceparent: str
    tracestate: str = ""

    @property
    def trace_id(self) -> str:
        return self.traceparent[3:35]

    @property
    def parent_id(self) -> str:
        return self.traceparent[36:52]


def parse_traceparent(value: str | None) -> str | None:
    """``value`` when it is a valid ``traceparent``, else None (version ``ff``, an all-zero
    trace or parent id, and a version-00 header with trailing fields are invalid)."""
    if not value:
        return None
    value = value.strip()
    m = _TRACEPARENT.fullmatch(value)
    if m is None:
        return None
    version, trace_id, parent_id, _, rest = m.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16 or (version == "00" and rest):
        return None
    return value


def trace_of(headers: Mapping[str, str]) -> TraceParent | None:
    """The caller's trace context from request headers, or None."""
    tp = parse_traceparent(headers.get("traceparent"))
    if tp is None:
        return None
    state = headers.get("tracestate") or ""
    return TraceParent(tp, state if len(state) <= _MAX_TRACESTATE else "")

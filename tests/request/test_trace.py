"""W3C traceparent parsing at the door: valid headers kept, invalid ones ignored."""

from __future__ import annotations

import pytest

from tiergate.request import trace_of
from tiergate.request.trace import parse_traceparent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("value", [
    None, "", "garbage", VALID.upper(), "ff" + VALID[2:], f"00-{'0' * 32}-00f067aa0ba902b7-01",
    f"00-4bf92f3577b34da6a3ce929d0e0e4736-{'0' * 16}-01", VALID + "-extra", VALID[:-1]])
def test_invalid_traceparents_are_ignored(value):
    assert parse_traceparent(value) is None


def test_valid_traceparent_and_future_versions():
    assert parse_traceparent(f" {VALID} ") == VALID
    future = "01" + VALID[2:] + "-more"  # a later version may add fields: the first four are read
    assert parse_traceparent(future) == future
    t = trace_of({"traceparent": VALID, "tracestate": "a=1,b=2"})
    assert t is not None and (t.trace_id, t.parent_id, t.tracestate) == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "a=1,b=2")
    assert trace_of({"tracestate": "a=1"}) is None
    assert trace_of({"traceparent": VALID, "tracestate": "x" * 600}).tracestate == ""

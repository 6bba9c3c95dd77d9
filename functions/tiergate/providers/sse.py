"""Server-sent events: an incremental decoder for upstream streams and the encoder the
gateway uses for its own streaming responses.

Both sit on the hot path (every streamed chunk passes through them), so they work on
bytes, use orjson, and do no per-line allocation beyond the slices they return.
"""

from __future__ import annotations

from typing import Any

import orjson

#: The OpenAI end-of-stream sentinel event.
DONE: bytes = b"data: [DONE]\n\n"
#: The payload of that event, as :class:`SSEDecoder` returns it.
DONE_DATA: bytes = b"[DONE]"


def format_sse(obj: Any) -> bytes:
    """One ``data:`` event carrying ``obj`` as compact JSON."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def format_event(event: str, obj: Any) -> bytes:
    """A named event (``event: <name>`` + ``data:``), as Anthropic streams use."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class SSEDecoder:
    """Feed raw bytes as they arrive; get back complete events as ``(event, data)``.

    ``event`` is the ``event:`` field or None; ``data`` the event's ``data:`` lines joined
    with ``\\n`` (as bytes). Comments (``:``), ``id:`` and ``retry:`` are ignored.
    Accepts ``\\n`` and ``\\r\\n`` line endings, split anywhere across feeds.
    """

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        if (not self._buf and not self._data and self._event is None and chunk.startswith(b"data: ")
                and chunk.endswith(b"\n\n") and chunk.find(b"\n") == len(chunk) - 2 and chunk[-3] != 13):
            # One whole ``data:`` event and nothing else (what an upstream usually sends per
            # write): its payload, without the line loop.
            return [(None, chunk[6:-2])]
        buf = self._buf + chunk if self._buf else chunk
        out: list[tuple[str | None, bytes]] = []
        start = 0
        find = buf.find
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            end = nl - 1 if nl > start and buf[nl - 1] == 13 else nl  # strip a trailing \r
            if end == start:  # blank line: dispatch
                if self._data:
                    out.append((self._event, b"\n".join(self._data) if len(self._data) > 1 else self._data[0]))
                    self._data = []
                self._event = None
            elif buf.startswith(b"data:", start):
                s = start + 6 if buf.startswith(b"data: ", start) else start + 5
                self._data.append(buf[s:end])
            elif buf.startswith(b"event:", start):
                self._event = buf[start + 6:end].strip().decode()
            start = nl + 1
        self._buf = buf[start:]
        return out

    def flush(self) -> list[tuple[str | None, bytes]]:
        """Events left when the stream ends without a final blank line."""
        out = self.feed(b"\n\n") if self._buf or self._data else []
        self._buf = b""
        return out

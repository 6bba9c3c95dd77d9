"""uvicorn's httptools protocol, writing a sized response's head and body in one write.

uvicorn writes the status line and headers when the app sends ``http.response.start``
and the body when it sends ``http.response.body``: two ``send`` system calls for every
JSON answer, and on loopback each call also pays for the receiver's wakeup (the socket
writes were a third of the gateway's CPU at 16 connections). For a response with a
``content-length`` (its body follows at once), this protocol holds the head until the
first body write and writes both together. A streamed (chunked) response's head goes
out at once (an event stream's client sees its 200 before the first event), unless the
app says its first event follows at once (:data:`tiergate.api.sse_response.BODY_FOLLOWS`:
the gateway's event streams, whose first event is in hand before the head is sent).

Two more things for streams, which call ``send`` once per event: the next chunk of a
chunked body is written by this class's ``send`` directly (uvicorn's own ``send`` does the
same after its checks for every other case, one coroutine deeper), and the access log is
told of the response's start by the cycle (``on_response_start``) instead of wrapping every
``send`` in a coroutine of its own.

``tiergate serve`` passes this class as uvicorn's ``http`` when httptools is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from tiergate.api.sse_response import BODY_FOLLOWS


class _HeldWrites:
    """A transport that keeps what is written until :meth:`release` (or a close)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def release(self) -> Any:
        if self.parts:
            self.transport.write(b"".join(self.parts))
            self.parts = []
        return self.transport

    def close(self) -> None:
        self.release().close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...
        return getattr(self.transport, name)


class _CoalescingCycle(RequestResponseCycle):
    #: Called with the status when the response starts (the access log: see
    #: :class:`tiergate.cli.access_log.AccessLog`, which then needs no send wrapper of its own).
    on_response_start: Callable[[int], None] | None = None

    def write_chunk(self, body: bytes) -> bool:
        """Write the next piece of a started chunked body now, as ``send`` would; False
        (nothing written) when ``send`` must do it: the response is not in that state, or
        the client reads slower than we write (``send`` then waits for it to drain)."""
        if (self.chunked_encoding and not self.response_complete and not self.disconnected
                and not self.flow.write_paused and self.transport.__class__ is not _HeldWrites
                and self.scope["method"] != "HEAD"):
            if body:
                self.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
            return True
        return False

    async def send(self, message: Any) -> None:
        # A streamed body's next chunk: uvicorn's send does this after a dozen checks, one
        # coroutine deeper; a stream sends one of these for every event it forwards.
        if (message["type"] == "http.response.body" and message.get("more_body")
                and self.write_chunk(message.get("body") or b"")):
            return
        if isinstance(self.transport, _HeldWrites):  # the first body write after a held head
            try:
                await super().send(message)
            finally:
                self.transport = self.transport.release()
            return
        starting = not self.response_started and message["type"] == "http.response.start"
        if not starting:
            await super().send(message)
            return
        if self.on_response_start is not None:
            self.on_response_start(message["status"])
        held = _HeldWrites(self.transport)
        self.transport = held  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            if not message.get(BODY_FOLLOWS) and (self.chunked_encoding is not False
                                                  or self.expected_content_length == 0):
                self.transport = held.release()  # a stream, an empty or a refused response: now


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # The cycle is uvicorn's (built in on_headers_complete); only its send differs.
        cycle.__class__ = _CoalescingCycle
        super()._start_asgi_task(cycle, app)

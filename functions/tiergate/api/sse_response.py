"""A lean ``text/event-stream`` response for the streaming hot path.

Starlette's StreamingResponse runs the body in an anyio task group beside a disconnect
listener (for ASGI servers below spec 2.4, uvicorn included). This does the same with
one plain asyncio task: the body is pumped in the request's own task; a watcher task
waits for ``http.disconnect`` and cancels the pump, so a client that leaves stops the
upstream stream (and the gateway's generator settles what was produced).

The first event is taken before the head is sent (the gateway already holds the
upstream's first chunk when it hands over a stream), and the head says so with
:data:`BODY_FOLLOWS`: ``tiergate serve``'s HTTP protocol then writes the head and the
first event together, one write and one wakeup of the client fewer before its first
byte. Other ASGI servers ignore the extra key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_BASE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                 (b"x-accel-buffering", b"no")]


#: A key of ``http.response.start``: its first body message follows at once (no I/O between).
BODY_FOLLOWS = "tiergate.body_follows"
#: The method of a server's ``send`` owner that writes the next chunk of a started body at
#: once (``write_chunk(bytes) -> bool``; False: not now, use ``send``): tiergate serve's protocol.
WRITE_CHUNK = "write_chunk"


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, chunks: AsyncIterator[bytes], headers: dict[str, str] | None = None, *,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.chunks = chunks
        #: Run after the body, however it ended (also when it never started): what the
        #: body stands for (the gateway's stream) must be closed, settling its request.
        self.on_close = on_close
        self.status_code = 200
        self.background: BackgroundTask | None = None
        self.raw_headers = _BASE_HEADERS + [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                            for k, v in (headers or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump = asyncio.current_task()
        left = False

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            if pump is not None:
                pump.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            chunks = self.chunks.__aiter__()
            try:
                first: bytes | None = await chunks.__anext__()
            except StopAsyncIteration:
                first = None
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers,
                        BODY_FOLLOWS: first is not None})
            if first is not None:
                await send({"type": "http.response.body", "body": first, "more_body": True})
                # tiergate serve's HTTP protocol writes a chunk without an ASGI message and a
                # coroutine for each (WRITE_CHUNK); under backpressure it declines, and send waits.
                write = getattr(getattr(send, "__self__", None), WRITE_CHUNK, None)
                async for chunk in chunks:
                    if write is None or not write(chunk):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not left:
                raise
            # The client went away: the cancellation was ours; nothing more to send.
            pump.uncancel() if pump is not None else None
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            try:
                aclose = getattr(self.chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                if self.on_close is not None:
                    await self.on_close()

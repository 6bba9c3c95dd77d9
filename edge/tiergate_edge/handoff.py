"""Items from a worker thread to the event loop, in batches.

A streamed local answer makes one chunk per token in the generating thread. Handing each
over with ``call_soon_threadsafe`` + an ``asyncio.Queue`` costs a loop wake-up (a self-pipe
write and an epoll return), a queue put and a getter wake-up per token, on the same two
cores the model computes on. Here the thread appends to a list and wakes the loop only when
the loop is waiting for it; the loop takes everything that arrived meanwhile in one go.
When the loop keeps up (the usual case) that is one wake-up per token and nothing queued;
when it falls behind (a slow client, a busy machine), it catches up a batch at a time.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # the consumer may have been cancelled meanwhile
        waiter.set_result(None)


class Handoff:
    """One producer thread, one consumer coroutine on ``loop``."""

    __slots__ = ("_items", "_lock", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:
        """From the worker thread (never blocks)."""
        with self._lock:
            self._items.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    async def take(self) -> list[Any]:
        """On the loop: every item put since the last call, waiting for at least one."""
        with self._lock:
            if not self._items:
                waiter = self._waiter = self._loop.create_future()
            else:
                waiter = None
        if waiter is not None:
            try:
                await waiter
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None
        with self._lock:
            items, self._items = self._items, []
        return items


def merge_deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive chunks that only add text become one chunk with their text joined (an
    OpenAI delta may carry any number of tokens): when the loop fell behind, the backlog
    goes out as one event, not one event (and one client parse) per token."""
    if len(chunks) < 2:
        return chunks
    out: list[dict[str, Any]] = []
    for c in chunks:
        prev = out[-1] if out else None
        if prev is not None and _text_only(prev) and _text_only(c):
            delta = prev["choices"][0]["delta"]
            delta["content"] += c["choices"][0]["delta"]["content"]
            continue
        out.append(c)
    return out


def _text_only(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    if not choices or len(choices) != 1 or "usage" in chunk:
        return False
    ch = choices[0]
    delta = ch.get("delta") or {}
    return (ch.get("finish_reason") is None and ch.get("logprobs") is None and set(delta) == {"content"}
            and isinstance(delta["content"], str))

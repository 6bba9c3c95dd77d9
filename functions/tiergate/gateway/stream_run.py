"""One streamed answer, settled exactly once (see :class:`StreamRun`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tiergate.dialects import native as native_dialects
from tiergate.errors import GatewayError
from tiergate.execution.billing import Verdict, request_verdict
from tiergate.execution.circuit import CircuitBoard
from tiergate.execution.executor import StreamHandle, tried
from tiergate.gateway.admitted import Admitted, capability
from tiergate.gateway.results import usage_block
from tiergate.limits.admission import Outcome
from tiergate.providers.base import WireChunk
from tiergate.request import GatewayRequest
from tiergate.tokens import content_tokens

#: The gateway's settlement of every reservation of a request (``Gateway._settle_all``).
SettleAll = Callable[[Admitted, Outcome | None, Verdict, GatewayRequest | None], Awaitable[None]]


class StreamRun:
    """One streamed answer: forwards the upstream's chunks (cost in the usage chunk) -- or,
    from a native deployment, its events unchanged (usage from the events that report it,
    :mod:`tiergate.dialects.native`) -- and settles exactly once: before the end (before
    a native stream's final event), on a mid-stream failure, when the client leaves, and
    also when it is closed before it was ever iterated (an async generator that never
    started runs no ``finally``, so this is a class)."""

    def __init__(self, settle_all: SettleAll, circuits: CircuitBoard, a: Admitted, h: StreamHandle,
                 req: GatewayRequest, ttft_ms: float) -> None:
        self._settle_all, self._circuits = settle_all, circuits
        self.a, self.h, self.req, self.ttft_ms = a, h, req, ttft_ms
        self.spec = h.deployment
        self.dialect = h.dialect
        self.prompt_est = req.needs.prompt_tokens
        self.usage: dict[str, Any] | None = None          # chat: the usage chunk's
        self.p: int | None = None                          # native: tokens the events reported
        self.c: int | None = None
        self.text: list[str] = []  # only to estimate usage when the upstream reports none
        self.settled = False
        self._judged = False
        self._gen = self._chunks() if self.dialect == "chat" else self._native()

    def __aiter__(self) -> AsyncIterator[Any]:
        # ``async for`` steps the generator itself, a Python call fewer per chunk; closing
        # stays this object's (aclose), which settles even a stream never iterated.
        return self._gen

    def __anext__(self) -> Any:
        return self._gen.__anext__()

    async def aclose(self) -> None:
        try:
            await self._gen.aclose()
        finally:
            self._verdict(None)
            if not self.settled:
                # Closed before the first step: the first chunk was produced and is billed.
                if self.h.first is not None:
                    self._count(self.h.first)
                await self._settle("client_disconnected")
            await close_quietly(self.h.rest)

    def _verdict(self, ok: bool | None) -> None:
        """The circuit's verdict, once the stream has ended (None: no verdict)."""
        if self._judged:
            return
        self._judged = True
        circuits, did = self._circuits, self.spec.deployment_id
        if ok is True:
            circuits.record_success(did)
        elif ok is False:
            circuits.record_failure(did)
        else:
            circuits.release(did)

    def _count(self, chunk: dict[str, Any]) -> None:
        if self.dialect != "chat":
            up, uc = native_dialects.event_usage(self.dialect, chunk)
            self.p, self.c = up or self.p, uc if uc is not None else self.c
            if self.c is None:
                self.text.append(native_dialects.event_text(self.dialect, chunk))
            return
        u = chunk.get("usage")
        if u:
            if type(chunk) is WireChunk:
                chunk.wire = None  # its usage gains cost_usd below: it must be encoded again
            self.usage = u
            u["cost_usd"] = round(self.spec.cost_usd(u.get("prompt_tokens", self.prompt_est),
                                                     u.get("completion_tokens", 0)), 10)
        elif self.usage is None:
            for ch in chunk.get("choices") or ():
                content = (ch.get("delta") or {}).get("content")
                if content:
                    self.text.append(content)

    def _tokens(self) -> tuple[int, int]:
        if self.dialect != "chat":
            return (self.prompt_est if self.p is None else self.p,
                    content_tokens("".join(self.text)) if self.c is None else self.c)
        u = self.usage or {}
        return (u.get("prompt_tokens", self.prompt_est),
                u["completion_tokens"] if "completion_tokens" in u else content_tokens("".join(self.text)))

    async def _settle(self, outcome: str) -> None:
        if self.settled:
            return
        self.settled = True
        p, c = self._tokens()
        a = self.a
        await self._settle_all(a, Outcome(
            deployment=self.spec, prompt_tokens=p, completion_tokens=c, cost_usd=self.spec.cost_usd(p, c),
            latency_ms=(time.perf_counter() - a.started) * 1000, attempts=tried(self.h.attempts), outcome=outcome,
            capability=capability(a.plan), ttft_ms=self.ttft_ms,
            fallback=self.spec.deployment_id != a.plan.candidates[0].deployment_id),
            request_verdict(None, self.h.attempts, False), self.req)

    async def _ended_early(self, e: BaseException) -> None:
        """Judge and settle a stream that ended before its upstream did."""
        if isinstance(e, GatewayError):
            # Mid-stream failure: bill what was produced, end with an error event. The
            # deployment failed after its first byte: that counts against its circuit.
            self._verdict(False if e.counts_against_deployment else None)
            await self._settle(f"error:{e.code}")
        else:
            # The client went away (or the stream was closed early): bill what was produced.
            self._verdict(None)
            await self._settle("client_disconnected")

    async def _upstream(self) -> AsyncIterator[dict[str, Any]]:
        """The upstream's events (first one included), counted; failures judged and settled."""
        h = self.h
        try:
            if h.first is not None:
                self._count(h.first)
                yield h.first
            async for chunk in h.rest:
                self._count(chunk)
                yield chunk
        except BaseException as e:
            await self._ended_early(e)
            raise
        finally:
            await close_quietly(h.rest)
        self._verdict(True)

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        """Chat: :meth:`_upstream`'s work in the same generator (each generator between the
        upstream's socket and the client's costs CPU for every chunk), then the usage
        estimate when the upstream reported none, then the settlement."""
        h, spec, count = self.h, self.spec, self._count
        first, last = h.first, h.first
        try:
            if first is not None:
                count(first)
                yield first
            async for chunk in h.rest:
                count(chunk)
                last = chunk
                yield chunk
        except BaseException as e:
            await self._ended_early(e)
            raise
        finally:
            await close_quietly(h.rest)
        self._verdict(True)
        if self.usage is None:
            # The upstream reported no usage: send our estimate so the client still gets one.
            c = content_tokens("".join(self.text))
            base = first or last or {}
            yield {"id": base.get("id", "chatcmpl-tg"), "object": "chat.completion.chunk",
                   "created": base.get("created", int(time.time())), "model": base.get("model", spec.name),
                   "choices": [], "usage": usage_block(self.prompt_est, c, spec.cost_usd(self.prompt_est, c))}
        # Settle before the end: the client's last event means the record is durable.
        await self._settle("ok")

    async def _native(self) -> AsyncIterator[dict[str, Any]]:
        final = native_dialects.FINAL_EVENTS[self.dialect]
        held: dict[str, Any] | None = None  # the final event waits for the settlement
        up = self._upstream()
        try:
            async for event in up:
                if event.get("type") in final:
                    held = event
                    continue
                yield event
        finally:
            await up.aclose()
        await self._settle("ok")
        if held is not None:
            yield held


async def close_quietly(it: Any) -> None:
    """Close an upstream iterator (its connection goes back to the pool); never raises."""
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # a broken upstream stream may fail to close; it is released anyway
            pass

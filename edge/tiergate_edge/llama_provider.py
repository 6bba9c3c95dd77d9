"""The ``llama-cpp`` provider: the async adapter over a shared :class:`LlamaRuntime`.

Generation runs in a worker thread (a llama.cpp context blocks and is not thread-safe);
this module is the handoff between that thread and the event loop, and the cancellation
flag between them: a stream the client leaves, an attempt the executor times out, or a
non-streamed request whose client disconnects stops the model within one token.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tiergate.errors import ClientDisconnected, UpstreamBadRequest, UpstreamServerError, UpstreamUnavailable
from tiergate.providers.base import ProviderCall
from tiergate_edge.chat_prompt import ChatPlan, plan_chat
from tiergate_edge.handoff import Handoff, merge_deltas
from tiergate_edge.llama_runtime import Generation, LlamaRuntime, LocalModel
from tiergate_edge.local_answer import buffered_chunks, chat_kwargs, completion_body

_DONE = object()
#: The default system prompt of a local answer when the client sends none. Measured on
#: SmolLM2-135M: 12 of 14 short factual questions right with it, 8-9 without.
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer directly and concisely."


class LlamaCppProvider:
    """The ``llama-cpp`` adapter over a shared :class:`LlamaRuntime`."""

    def __init__(self, runtime: LlamaRuntime, *, default_max_tokens: int = 256,
                 system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> None:
        self.runtime = runtime
        self._default_max = default_max_tokens
        self._system = system_prompt

    async def _prepare(self, call: ProviderCall) -> tuple[LocalModel, ChatPlan, dict[str, Any]]:
        spec = call.deployment
        lm = self.runtime.resolved(spec) or await asyncio.to_thread(self.runtime.resolve, spec)
        plan = plan_chat(call.body, default_system=self._system, chat_format=lm.chat_format,
                         template_tools=lm.template_tools)
        kw = chat_kwargs(call.body, spec, plan, default_max_tokens=self._default_max, seed=self.runtime.seed)
        return lm, plan, kw

    async def complete(self, call: ProviderCall) -> dict[str, Any]:
        lm, plan, kw = await self._prepare(call)
        cancelled = threading.Event()
        work = asyncio.ensure_future(asyncio.to_thread(self.runtime.generate, lm, kw, cancelled))
        try:
            if call.client_gone is None:
                gen = await work
            else:
                gen = await self._unless_gone(work, call.client_gone)
        finally:
            cancelled.set()  # a cancelled attempt (timeout, client gone) stops the model at the next token
        if gen is None:
            with contextlib.suppress(Exception):
                await work  # the model stops at its next token: free before this request ends
            raise ClientDisconnected(f"{call.deployment.deployment_id}: the client disconnected; local generation "
                                     "stopped")
        return completion_body(gen, plan, call.deployment.name)

    @staticmethod
    async def _unless_gone(work: asyncio.Future[Generation], client_gone: Callable[[], Awaitable[None]]
                           ) -> Generation | None:
        """The generation, or None when the client left first (the caller then stops it).
        A non-streamed request has no stream to fail on, so the disconnect is watched here:
        otherwise the dead request would hold the model until ``max_tokens``."""
        gone = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            raise
        finally:
            gone.cancel()
        if work.done():
            return work.result()
        return None

    async def stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        spec = call.deployment
        lm, plan, kw = await self._prepare(call)
        if plan.mode != "text":
            # Tool and JSON answers are finished whole before they are sent: the client must
            # see well-formed calls, and JSON that max_tokens cut off is closed first.
            for chunk in buffered_chunks(await self.complete(call)):
                yield chunk
            return
        handoff = Handoff(asyncio.get_running_loop())
        cancelled = threading.Event()

        def work() -> None:
            try:
                handoff.put(self.runtime.generate(lm, kw, cancelled, on_chunk=handoff.put))
            except BaseException as e:  # surfaced to the event loop
                handoff.put(e)
            finally:
                handoff.put(_DONE)

        worker = asyncio.get_running_loop().run_in_executor(None, work)
        name = spec.name
        try:
            last: dict[str, Any] | None = None
            while True:
                items = await handoff.take()
                if len(items) == 1 and type(items[0]) is dict:  # the usual case: one token
                    last = items[0]
                    last["model"] = name
                    yield last
                    continue
                chunks = [i for i in items if type(i) is dict]
                for chunk in merge_deltas(chunks):
                    chunk["model"] = name
                    last = chunk
                    yield chunk
                if len(chunks) == len(items):
                    continue
                for item in items:
                    if item is _DONE:
                        return
                    if isinstance(item, Generation):
                        yield {"id": last["id"] if last else "chatcmpl-local", "object": "chat.completion.chunk",
                               "created": last["created"] if last else int(time.time()), "model": name,
                               "choices": [], "usage": {"prompt_tokens": item.prompt_tokens,
                                                        "completion_tokens": item.completion_tokens,
                                                        "total_tokens": item.prompt_tokens + item.completion_tokens}}
                    elif isinstance(item, UpstreamBadRequest | UpstreamServerError):
                        raise item
                    elif isinstance(item, BaseException):
                        raise UpstreamUnavailable(f"{spec.deployment_id}: local generation failed: {item}")
        finally:
            cancelled.set()  # the client went away (or we are done): stop generating
            with contextlib.suppress(Exception):
                await asyncio.shield(worker)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.runtime.close)


def provider_from(runtime: LlamaRuntime, edge: Any) -> LlamaCppProvider:
    return LlamaCppProvider(runtime, default_max_tokens=edge.default_max_tokens,
                            system_prompt=edge.system_prompt or None)

"""The local model runtime on llama-cpp-python: the only module importing ``llama_cpp``.

One model is resident per process: the first request for a deployment loads its GGUF
(lazy), a request for another deployment swaps it. The blocking llama.cpp calls run in
a worker thread so the event loop keeps serving; one lock serializes use of the model
(llama.cpp contexts are not thread-safe). Streaming hands chunks from the worker thread
to the event loop through a queue and stops generating when the client goes away.

The ``llama-cpp`` adapter (:class:`LlamaCppProvider`) implements the core's Provider
contract with OpenAI-shaped dicts; usage is always reported (a usage-only final chunk
when streaming, as OpenAI does with ``include_usage``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from tiergate.config.catalog import ModelSpec
from tiergate.errors import UpstreamBadRequest, UpstreamServerError, UpstreamUnavailable
from tiergate.providers.base import ProviderCall
from tiergate_edge import default_model
from tiergate_edge.gguf_meta import NotGGUF, read_info

#: OpenAI parameters llama.cpp's chat completion understands (others are ignored).
_PASSTHROUGH = ("temperature", "top_p", "top_k", "stop", "seed", "presence_penalty", "frequency_penalty",
                "response_format", "logit_bias")
_DONE = object()


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A resolved llama-cpp deployment: what to load and how."""

    path: Path
    n_ctx: int
    n_ctx_train: int | None
    chat_format: str | None
    has_template: bool


class LlamaRuntime:
    """Loads, swaps and runs GGUF models; one resident at a time."""

    def __init__(self, *, models_dir: Path, n_ctx_cap: int = 4096, n_threads: int = 1, n_batch: int = 512,
                 seed: int = 0, progress: bool = True, verbose: bool = False) -> None:
        self._models_dir = Path(models_dir)
        self._cap = n_ctx_cap
        self._threads = n_threads
        self._batch = n_batch
        self._seed = seed
        self._progress = progress
        self._verbose = verbose
        self._lock = threading.Lock()          # guards the resident model while it runs
        self._resolve_lock = threading.Lock()  # guards the resolution cache
        self._resolved: dict[tuple[str, str | None, int | None], LocalModel] = {}
        self._llm: llama_cpp.Llama | None = None
        self._resident: LocalModel | None = None
        self.loads = 0
        self.load_seconds = 0.0

    # --- resolution (no model load) ------------------------------------------------

    def resolve(self, spec: ModelSpec) -> LocalModel:
        """Path, context size and chat format for a deployment; reads only the GGUF header.
        The context is the model's trained context, capped by the catalog and the setting."""
        key = (spec.model, spec.chat_format, spec.context_window)
        with self._resolve_lock:
            hit = self._resolved.get(key)
            if hit is not None:
                return hit
            try:
                path = default_model.resolve_model_path(spec.model, self._models_dir, progress=self._progress)
                info = read_info(path)
            except (NotGGUF, ValueError, OSError) as e:
                raise UpstreamServerError(f"{spec.deployment_id}: cannot use local model: {e}",
                                          code="local_model_unavailable") from None
            limits = [c for c in (info.context_length, spec.context_window, self._cap) if c]
            fmt = spec.chat_format or default_model.default_chat_format(spec.model)
            lm = LocalModel(path=path, n_ctx=min(limits), n_ctx_train=info.context_length,
                            chat_format=fmt, has_template=info.has_chat_template)
            self._resolved[key] = lm
            return lm

    def context_window(self, spec: ModelSpec) -> int:
        return self.resolve(spec).n_ctx

    # --- load / swap (call with self._lock held, in a worker thread) -----------------

    def _ensure(self, lm: LocalModel) -> llama_cpp.Llama:
        if self._llm is not None and self._resident == lm:
            return self._llm
        self._unload()
        t0 = time.perf_counter()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(lm.path), n_ctx=lm.n_ctx, n_threads=self._threads, n_threads_batch=self._threads,
                n_batch=min(self._batch, lm.n_ctx), seed=self._seed, chat_format=lm.chat_format,
                verbose=self._verbose)
        except ValueError as e:  # llama-cpp-python's type for "failed to load model"
            raise UpstreamServerError(f"cannot load {lm.path}: {e}", code="local_model_load_failed") from None
        self._resident = lm
        self.loads += 1
        self.load_seconds = time.perf_counter() - t0
        return self._llm

    def _unload(self) -> None:
        if self._llm is not None:
            with contextlib.suppress(Exception):
                self._llm.close()
        self._llm, self._resident = None, None

    def preload(self, spec: ModelSpec) -> None:
        lm = self.resolve(spec)
        with self._lock:
            self._ensure(lm)

    def close(self) -> None:
        with self._lock:
            self._unload()

    def info(self) -> dict[str, Any]:
        r = self._resident
        return {"loaded": r is not None, "path": str(r.path) if r else None, "n_ctx": r.n_ctx if r else None,
                "chat_format": (r.chat_format or ("gguf-template" if r.has_template else None)) if r else None,
                "n_threads": self._threads, "loads": self.loads, "last_load_s": round(self.load_seconds, 3)}

    # --- generation (blocking; run in a worker thread) --------------------------------

    def complete_blocking(self, lm: LocalModel, kwargs: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            llm = self._ensure(lm)
            try:
                return llm.create_chat_completion(**kwargs)
            except ValueError as e:  # prompt + max_tokens beyond n_ctx, bad grammar/schema
                raise UpstreamBadRequest(f"local model: {e}", code="context_length_exceeded") from None

    def stream_blocking(self, lm: LocalModel, kwargs: dict[str, Any], emit: Callable[[Any], None],
                        cancelled: threading.Event) -> None:
        """Generate, calling ``emit(chunk)`` per chunk, then ``emit(usage_chunk)``; stops early
        when ``cancelled`` is set. Exceptions are emitted, not raised (we are in a thread)."""
        with self._lock:
            try:
                llm = self._ensure(lm)
                gen = llm.create_chat_completion(**kwargs, stream=True)
                prompt_tokens, completion, last = None, 0, None
                for chunk in gen:
                    delta = chunk["choices"][0].get("delta") or {} if chunk.get("choices") else {}
                    if "content" in delta:
                        completion += 1  # llama-cpp-python yields one chunk per generated token
                        if prompt_tokens is None:
                            prompt_tokens = llm.n_tokens  # the prompt is evaluated by the first token
                    last = chunk
                    emit(chunk)
                    if cancelled.is_set():
                        gen.close()
                        return
                p = prompt_tokens if prompt_tokens is not None else llm.n_tokens
                emit({"id": last["id"] if last else "chatcmpl-local", "object": "chat.completion.chunk",
                      "created": last["created"] if last else int(time.time()), "model": kwargs.get("model"),
                      "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": completion,
                                               "total_tokens": p + completion}})
            except ValueError as e:
                emit(UpstreamBadRequest(f"local model: {e}", code="context_length_exceeded"))
            except Exception as e:  # surfaced to the event loop as an upstream error
                emit(e)


def chat_kwargs(body: dict[str, Any], spec: ModelSpec, default_max_tokens: int) -> dict[str, Any]:
    """OpenAI request body -> ``create_chat_completion`` keyword arguments."""
    if (body.get("n") or 1) != 1:
        raise UpstreamBadRequest("the local model supports n=1 only", param="n")
    if body.get("tools") or body.get("functions"):
        raise UpstreamBadRequest("the local model does not support tools", param="tools")
    kw: dict[str, Any] = {k: body[k] for k in _PASSTHROUGH if body.get(k) is not None}
    kw["messages"] = body.get("messages") or []
    max_out = body.get("max_completion_tokens") or body.get("max_tokens") or spec.max_output_tokens
    kw["max_tokens"] = int(max_out or default_max_tokens)
    kw["model"] = spec.name
    return kw


class LlamaCppProvider:
    """The ``llama-cpp`` adapter over a shared :class:`LlamaRuntime`."""

    def __init__(self, runtime: LlamaRuntime, *, default_max_tokens: int = 512) -> None:
        self.runtime = runtime
        self._default_max = default_max_tokens

    async def complete(self, call: ProviderCall) -> dict[str, Any]:
        spec = call.deployment
        kw = chat_kwargs(call.body, spec, self._default_max)
        lm = await asyncio.to_thread(self.runtime.resolve, spec)
        resp = await asyncio.to_thread(self.runtime.complete_blocking, lm, kw)
        resp["model"] = spec.name
        return resp

    async def stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        spec = call.deployment
        kw = chat_kwargs(call.body, spec, self._default_max)
        lm = await asyncio.to_thread(self.runtime.resolve, spec)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(q.put_nowait, item)

        def work() -> None:
            try:
                self.runtime.stream_blocking(lm, kw, emit, cancelled)
            finally:
                emit(_DONE)

        worker = loop.run_in_executor(None, work)
        try:
            while True:
                item = await q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, UpstreamBadRequest | UpstreamServerError):
                        raise item
                    raise UpstreamUnavailable(f"{spec.deployment_id}: local generation failed: {item}")
                item["model"] = spec.name
                yield item
        finally:
            cancelled.set()  # the client went away (or we are done): stop generating
            with contextlib.suppress(Exception):
                await asyncio.shield(worker)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.runtime.close)

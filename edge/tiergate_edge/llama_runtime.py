"""The local model runtime on llama-cpp-python: the only module importing ``llama_cpp``.

Models load lazily on their first request and stay resident, several at once, under a
memory budget (GGUF size + the KV cache its context needs); loading one more evicts the
least recently used idle ones. Each resident model has its own lock (a llama.cpp
context is not thread-safe) and its own context size and threads. The blocking calls
run in worker threads so the event loop keeps serving.

Every generation streams internally, token by token, and checks a cancellation flag
after each token: a client that disconnects, or an attempt the executor times out,
stops the model within one token and frees it for the next request.

Prompt cache: a resident context keeps its KV state, and llama.cpp re-evaluates only
the tokens after the longest prefix shared with the previous prompt (system prompt,
earlier turns). With ``prompt_cache_mb`` > 0 a RAM cache also keeps the states of
other recent prompts, for interleaved conversations (it costs a state copy per answer).

Answers are constrained by llama.cpp grammars: JSON mode and ``json_schema`` (GBNF from
the schema), and forced tool calls (the arguments' schemas); see :mod:`chat_prompt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import llama_grammar

from tiergate.config.catalog import ModelSpec
from tiergate.errors import UpstreamBadRequest, UpstreamServerError, UpstreamUnavailable
from tiergate.providers.base import ProviderCall
from tiergate_edge import default_model
from tiergate_edge.chat_prompt import ChatPlan, close_json, parse_tool_calls, plan_chat, tool_call_grammar
from tiergate_edge.gguf_meta import GGUFInfo, NotGGUF, read_info
from tiergate_edge.model_store import ModelStore

#: OpenAI parameters passed to llama.cpp as they are (others are ignored; JSON is a grammar).
_PASSTHROUGH = ("temperature", "top_p", "top_k", "stop", "seed", "presence_penalty", "frequency_penalty",
                "logit_bias")
_DONE = object()
#: The default system prompt of a local answer when the client sends none. Measured on
#: SmolLM2-135M: 12 of 14 short factual questions right with it, 8-9 without.
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer directly and concisely."


class _Cancelled(Exception):
    """Raised from the sampling loop when the request was cancelled."""


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A resolved llama-cpp deployment: what to load and how."""

    path: Path
    n_ctx: int
    n_ctx_train: int | None
    chat_format: str | None
    has_template: bool
    n_threads: int
    #: Estimated resident bytes: the weights plus the f16 KV cache of ``n_ctx`` tokens.
    est_bytes: int


@dataclass(slots=True)
class _Resident:
    lm: LocalModel
    lock: threading.Lock = field(default_factory=threading.Lock)
    llm: Any = None
    last_used: float = 0.0


@dataclass(slots=True)
class Generation:
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    cancelled: bool = False


def estimate_bytes(info: GGUFInfo, n_ctx: int) -> int:
    size = info.path.stat().st_size
    if info.block_count and info.embedding_length and info.head_count:
        kv_heads = info.head_count_kv or info.head_count
        kv_dim = info.embedding_length // info.head_count * kv_heads
        size += n_ctx * info.block_count * kv_dim * 2 * 2  # K and V, f16
    return size


@lru_cache(maxsize=64)
def _schema_gbnf(schema_json: str) -> str:
    try:
        return llama_grammar.json_schema_to_gbnf(schema_json)
    except Exception as e:  # the converter raises bare Exceptions for what it cannot express
        raise UpstreamBadRequest(f"the local model cannot constrain output to this JSON schema: {e}",
                                 param="response_format") from None


def grammar_for(plan: ChatPlan) -> Any:
    """The llama.cpp grammar a plan's answer must follow, or None (free text)."""
    if plan.mode == "json":
        text = _schema_gbnf(json.dumps(plan.schema, sort_keys=True)) if plan.schema else llama_grammar.JSON_GBNF
    elif plan.mode == "tools" and plan.force_call:
        text = tool_call_grammar(_schema_gbnf(json.dumps(plan.schema, sort_keys=True)))
    else:
        return None
    return llama_cpp.LlamaGrammar.from_string(text, verbose=False)


class LlamaRuntime:
    """Loads, keeps (LRU under a memory budget) and runs GGUF models."""

    def __init__(self, *, models_dir: Path, n_ctx_cap: int = 4096, n_threads: int = 1, n_batch: int = 512,
                 seed: int = 0, progress: bool = True, verbose: bool = False, memory_budget_mb: int = 2048,
                 prompt_cache_mb: int = 0) -> None:
        self._models_dir = Path(models_dir)
        self._cap = n_ctx_cap
        self._threads = n_threads
        self._batch = n_batch
        self.seed = seed
        self._progress = progress
        self._verbose = verbose
        self._budget = memory_budget_mb * 1024 * 1024
        self._prompt_cache = prompt_cache_mb * 1024 * 1024
        self._pool_lock = threading.Lock()     # guards the residents map and the counters
        self._resolve_lock = threading.Lock()  # guards the resolution cache
        self._resolved: dict[tuple[str, str | None, int | None], LocalModel] = {}
        self._residents: OrderedDict[LocalModel, _Resident] = OrderedDict()
        self.loads = 0
        self.evictions = 0
        self.load_seconds = 0.0
        #: Tokens generated since start (all models): how tests see generation stop.
        self.tokens_generated = 0
        self.last_ttft_s: float | None = None

    # --- resolution (no model load) ------------------------------------------------

    def resolve(self, spec: ModelSpec) -> LocalModel:
        """Path, context size, threads and chat format for a deployment; reads only the GGUF
        header. The context is the model's trained context, capped by the catalog, the
        model's own entry (``tiergate models add --ctx``) and the runtime's cap."""
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
            entry = ModelStore(self._models_dir).get(spec.model)
            limits = [c for c in (info.context_length, spec.context_window, entry and entry.n_ctx, self._cap) if c]
            n_ctx = min(limits)
            lm = LocalModel(path=path, n_ctx=n_ctx, n_ctx_train=info.context_length,
                            chat_format=spec.chat_format or default_model.default_chat_format(spec.model),
                            has_template=info.has_chat_template,
                            n_threads=(entry and entry.n_threads) or self._threads,
                            est_bytes=estimate_bytes(info, n_ctx))
            self._resolved[key] = lm
            return lm

    def context_window(self, spec: ModelSpec) -> int:
        return self.resolve(spec).n_ctx

    # --- residency ------------------------------------------------------------------

    @contextlib.contextmanager
    def _use(self, lm: LocalModel):  # type: ignore[no-untyped-def]
        """The resident model for ``lm``, loaded if needed, locked for the caller."""
        with self._pool_lock:
            res = self._residents.get(lm)
            if res is None:
                res = self._residents[lm] = _Resident(lm)
            self._residents.move_to_end(lm)
        with res.lock:
            if res.llm is None:
                self._make_room(lm)
                res.llm = self._load(lm)
            res.last_used = time.monotonic()
            yield res.llm

    def _make_room(self, lm: LocalModel) -> None:
        """Evict least recently used idle models until ``lm`` fits the budget (a model
        bigger than the whole budget still loads, alone)."""
        with self._pool_lock:
            loaded = [r for r in self._residents.values() if r.llm is not None and r.lm != lm]
            used = sum(r.lm.est_bytes for r in loaded)
            for r in loaded:  # OrderedDict order: least recently used first
                if used + lm.est_bytes <= self._budget:
                    break
                if r.lock.acquire(blocking=False):  # busy models are never evicted mid-answer
                    try:
                        self._close(r)
                        self.evictions += 1
                        used -= r.lm.est_bytes
                    finally:
                        r.lock.release()

    def _load(self, lm: LocalModel) -> Any:
        t0 = time.perf_counter()
        try:
            llm = llama_cpp.Llama(
                model_path=str(lm.path), n_ctx=lm.n_ctx, n_threads=lm.n_threads, n_threads_batch=lm.n_threads,
                n_batch=min(self._batch, lm.n_ctx), seed=self.seed, chat_format=lm.chat_format,
                verbose=self._verbose)
        except ValueError as e:  # llama-cpp-python's type for "failed to load model"
            raise UpstreamServerError(f"cannot load {lm.path}: {e}", code="local_model_load_failed") from None
        if self._prompt_cache:
            llm.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=self._prompt_cache))
        with self._pool_lock:
            self.loads += 1
            self.load_seconds = time.perf_counter() - t0
        return llm

    @staticmethod
    def _close(res: _Resident) -> None:
        if res.llm is not None:
            with contextlib.suppress(Exception):
                res.llm.close()
        res.llm = None

    def preload(self, spec: ModelSpec) -> None:
        with self._use(self.resolve(spec)):
            pass

    def close(self) -> None:
        with self._pool_lock:
            residents = list(self._residents.values())
            self._residents.clear()
        for r in residents:
            with r.lock:
                self._close(r)

    def info(self) -> dict[str, Any]:
        with self._pool_lock:
            loaded = [r for r in self._residents.values() if r.llm is not None]
        last = loaded[-1].lm if loaded else None
        return {"loaded": last is not None, "path": str(last.path) if last else None,
                "n_ctx": last.n_ctx if last else None,
                "chat_format": (last.chat_format or ("gguf-template" if last.has_template else None)) if last else None,
                "n_threads": last.n_threads if last else self._threads,
                "resident": [{"path": str(r.lm.path), "n_ctx": r.lm.n_ctx, "n_threads": r.lm.n_threads,
                              "est_mb": round(r.lm.est_bytes / 2**20, 1)} for r in loaded],
                "memory_budget_mb": round(self._budget / 2**20), "loads": self.loads, "evictions": self.evictions,
                "last_load_s": round(self.load_seconds, 3), "tokens_generated": self.tokens_generated,
                "last_ttft_s": None if self.last_ttft_s is None else round(self.last_ttft_s, 4)}

    # --- generation (blocking; run in a worker thread) --------------------------------

    def generate(self, lm: LocalModel, kwargs: dict[str, Any], cancelled: threading.Event,
                 on_chunk: Callable[[dict[str, Any]], None] | None = None) -> Generation:
        """Run one chat completion token by token; ``on_chunk`` gets each llama.cpp chunk.
        Stops at the first token after ``cancelled`` is set."""
        out = Generation()
        parts: list[str] = []
        t0 = time.perf_counter()
        def stop_when_cancelled(input_ids: Any, scores: Any) -> Any:
            # Runs inside llama.cpp's sampling loop, once per token, even while the library
            # holds output back (stop-sequence or UTF-8 boundaries) and yields nothing: the
            # only place a cancel is seen within one token whatever the text looks like.
            if cancelled.is_set():
                raise _Cancelled
            return scores

        processors = llama_cpp.LogitsProcessorList([*(kwargs.pop("logits_processor", None) or ()),
                                                    stop_when_cancelled])
        with self._use(lm) as llm:
            try:
                gen = llm.create_chat_completion(**kwargs, logits_processor=processors, stream=True)
                try:
                    for chunk in gen:
                        choice = chunk["choices"][0] if chunk.get("choices") else {}
                        delta = choice.get("delta") or {}
                        if "content" in delta:
                            if out.ttft_s is None:
                                out.ttft_s = time.perf_counter() - t0
                                out.prompt_tokens = llm.n_tokens  # evaluated before the first token
                            out.completion_tokens += 1  # one chunk per generated token
                            self.tokens_generated += 1
                            parts.append(delta["content"] or "")
                        if choice.get("finish_reason"):
                            out.finish_reason = choice["finish_reason"]
                        if on_chunk is not None:
                            on_chunk(chunk)
                        if cancelled.is_set():
                            out.cancelled = True
                            break
                except _Cancelled:
                    out.cancelled = True
                finally:
                    gen.close()
            except ValueError as e:  # prompt beyond n_ctx, a grammar llama.cpp rejects
                raise UpstreamBadRequest(f"local model: {e}", code="context_length_exceeded") from None
            if out.ttft_s is None:
                out.prompt_tokens = llm.n_tokens
        self.last_ttft_s = out.ttft_s
        out.text = "".join(parts)
        return out


def chat_kwargs(body: dict[str, Any], spec: ModelSpec, plan: ChatPlan, *, default_max_tokens: int,
                seed: int) -> dict[str, Any]:
    """The ``create_chat_completion`` keyword arguments for a planned request. Defaults
    chosen for small local models: temperature 0.2, repeat penalty 1.1, a fixed seed (the
    same request gets the same answer), and a short ``max_tokens`` so a runaway loop ends
    in seconds; the client's values win, capped by the catalog's ``max_output_tokens``."""
    if (body.get("n") or 1) != 1:
        raise UpstreamBadRequest("the local model supports n=1 only", param="n")
    kw: dict[str, Any] = {k: body[k] for k in _PASSTHROUGH if body.get(k) is not None}
    kw.setdefault("temperature", 0.2)
    kw.setdefault("seed", seed)
    kw["repeat_penalty"] = 1.1
    kw["messages"] = plan.messages
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    max_out = int(asked) if asked else default_max_tokens
    if spec.max_output_tokens:
        max_out = min(max_out, spec.max_output_tokens)
    kw["max_tokens"] = max_out
    kw["model"] = spec.name
    grammar = grammar_for(plan)
    if grammar is not None:
        kw["grammar"] = grammar
    return kw


def completion_body(gen: Generation, plan: ChatPlan, model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` from a finished generation."""
    finish = gen.finish_reason or ("length" if gen.cancelled else "stop")
    text = gen.text
    if plan.mode == "json":
        text = close_json(text)  # cut off by max_tokens: still parses
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if plan.mode == "tools":
        content, calls = parse_tool_calls(gen.text, plan.tool_names)
        if calls:
            message = {"role": "assistant", "content": content, "tool_calls": calls}
            finish = "tool_calls"
    return {"id": "chatcmpl-" + format(time.time_ns(), "x"), "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                      "total_tokens": gen.prompt_tokens + gen.completion_tokens}}


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def buffered_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A finished completion as stream chunks (tool answers are parsed before they are sent)."""
    cid, created, model = body["id"], body["created"], body["model"]
    choice = body["choices"][0]
    msg = choice["message"]
    chunks = [_chunk(cid, created, model, {"role": "assistant", "content": ""})]
    if msg.get("tool_calls"):
        calls = [{"index": i, **c} for i, c in enumerate(msg["tool_calls"])]
        chunks.append(_chunk(cid, created, model, {"tool_calls": calls}))
    elif msg.get("content"):
        chunks.append(_chunk(cid, created, model, {"content": msg["content"]}))
    chunks.append(_chunk(cid, created, model, {}, choice["finish_reason"]))
    chunks.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": body["usage"]})
    return chunks


class LlamaCppProvider:
    """The ``llama-cpp`` adapter over a shared :class:`LlamaRuntime`."""

    def __init__(self, runtime: LlamaRuntime, *, default_max_tokens: int = 256,
                 system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> None:
        self.runtime = runtime
        self._default_max = default_max_tokens
        self._system = system_prompt

    async def _prepare(self, call: ProviderCall) -> tuple[LocalModel, ChatPlan, dict[str, Any]]:
        spec = call.deployment
        lm = await asyncio.to_thread(self.runtime.resolve, spec)
        plan = plan_chat(call.body, default_system=self._system, chat_format=lm.chat_format)
        kw = chat_kwargs(call.body, spec, plan, default_max_tokens=self._default_max, seed=self.runtime.seed)
        return lm, plan, kw

    async def complete(self, call: ProviderCall) -> dict[str, Any]:
        lm, plan, kw = await self._prepare(call)
        cancelled = threading.Event()
        try:
            gen = await asyncio.to_thread(self.runtime.generate, lm, kw, cancelled)
        finally:
            cancelled.set()  # a cancelled attempt (timeout, client gone) stops the model at the next token
        return completion_body(gen, plan, call.deployment.name)

    async def stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        spec = call.deployment
        lm, plan, kw = await self._prepare(call)
        if plan.mode != "text":
            # Tool and JSON answers are finished whole before they are sent: the client must
            # see well-formed calls, and JSON that max_tokens cut off is closed first.
            for chunk in buffered_chunks(await self.complete(call)):
                yield chunk
            return
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(q.put_nowait, item)

        def work() -> None:
            try:
                gen = self.runtime.generate(lm, kw, cancelled, on_chunk=emit)
                emit(("usage", gen))
            except BaseException as e:  # surfaced to the event loop
                emit(e)
            finally:
                emit(_DONE)

        worker = loop.run_in_executor(None, work)
        try:
            last: dict[str, Any] | None = None
            while True:
                item = await q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, UpstreamBadRequest | UpstreamServerError):
                        raise item
                    raise UpstreamUnavailable(f"{spec.deployment_id}: local generation failed: {item}")
                if isinstance(item, tuple):
                    g: Generation = item[1]
                    yield {"id": last["id"] if last else "chatcmpl-local", "object": "chat.completion.chunk",
                           "created": last["created"] if last else int(time.time()), "model": spec.name,
                           "choices": [], "usage": {"prompt_tokens": g.prompt_tokens,
                                                    "completion_tokens": g.completion_tokens,
                                                    "total_tokens": g.prompt_tokens + g.completion_tokens}}
                    continue
                item["model"] = spec.name
                last = item
                yield item
        finally:
            cancelled.set()  # the client went away (or we are done): stop generating
            with contextlib.suppress(Exception):
                await asyncio.shield(worker)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.runtime.close)


def runtime_from(edge: Any) -> LlamaRuntime:
    """The runtime an :class:`~tiergate_edge.settings.EdgeSettings` describes."""
    return LlamaRuntime(models_dir=edge.models_dir, n_ctx_cap=edge.n_ctx_cap, n_threads=edge.n_threads,
                        n_batch=edge.n_batch, seed=edge.seed, memory_budget_mb=edge.memory_budget_mb,
                        prompt_cache_mb=edge.prompt_cache_mb)


def provider_from(runtime: LlamaRuntime, edge: Any) -> LlamaCppProvider:
    return LlamaCppProvider(runtime, default_max_tokens=edge.default_max_tokens,
                            system_prompt=edge.system_prompt or None)

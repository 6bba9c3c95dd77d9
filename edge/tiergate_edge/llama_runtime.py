"""The local model runtime on llama-cpp-python: the only module importing ``llama_cpp``.

Its job is the models: resolve, load, keep, evict, and run one generation at a time per
model. The async adapter over it is :mod:`tiergate_edge.llama_provider`; the request and
answer shapes are :mod:`tiergate_edge.chat_prompt` and :mod:`tiergate_edge.local_answer`.

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

Answers are constrained by llama.cpp grammars (:func:`grammar_for`): JSON mode and
``json_schema`` (GBNF from the schema), and forced tool calls (the arguments' schemas).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as llama_lib  # the ctypes bindings: Llama() starts from their defaults
from llama_cpp import llama_grammar

from tiergate.config.catalog import ModelSpec
from tiergate.errors import UpstreamBadRequest, UpstreamServerError
from tiergate_edge import default_model
from tiergate_edge.chat_prompt import ChatPlan, tool_call_grammar
from tiergate_edge.gguf_meta import GGUFInfo, NotGGUF, read_info
from tiergate_edge.model_store import ModelStore

#: Whether this llama.cpp build has the AMX matmul (built with ``-march=native`` on an Intel
#: CPU with AMX: Sapphire Rapids and later). llama.cpp then puts the weights in an "AMX"
#: buffer, and its AMX matmul segfaults in the first decode on such machines
#: (ggml-org/llama.cpp#20824, open; measured here on a Xeon with AMX: the bundled
#: SmolLM2 crashed on its first answer, every time).
AMX_BUILD = b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
_library_model_params = llama_lib.llama_model_default_params


def model_params() -> Any:
    """The model parameters every load starts from: llama.cpp's defaults, except that a
    build with AMX loads without extra buffer types (AMX, and the CPU repack of Q4_0-like
    weights), on llama.cpp's plain CPU buffers, which answer (the bundled model: 28.4
    tokens/s in ``bench/edge`` on a 2-core AMX machine). ``Llama()`` takes no such argument, so the bindings'
    default is replaced (this module is the only one that loads models)."""
    params = _library_model_params()
    if AMX_BUILD:
        params.use_extra_bufts = False
    return params


llama_lib.llama_model_default_params = model_params


class _Llama(llama_cpp.Llama):
    """``llama_cpp.Llama`` with a per-token hook: ``on_token(token)`` runs as each token is
    sampled (before llama-cpp-python decides whether it has text to emit yet), and a True
    return ends the generation there, as if ``max_tokens`` were reached."""

    on_token: Callable[[int], bool] | None = None

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
        hook = self.on_token
        for token in super().generate(*args, **kwargs):
            if hook is not None and hook(token):
                return
            yield token


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A resolved llama-cpp deployment: what to load and how."""

    path: Path
    n_ctx: int
    n_ctx_train: int | None
    chat_format: str | None
    has_template: bool
    n_threads: int
    #: The model's own chat template renders tools (so ``tool_choice: auto`` is its decision).
    template_tools: bool
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
            fmt = spec.chat_format or default_model.default_chat_format(spec.model)
            lm = LocalModel(path=path, n_ctx=n_ctx, n_ctx_train=info.context_length, chat_format=fmt,
                            has_template=info.has_chat_template,
                            template_tools=fmt is None and info.template_renders_tools,
                            n_threads=(entry and entry.n_threads) or self._threads,
                            est_bytes=estimate_bytes(info, n_ctx))
            self._resolved[key] = lm
            return lm

    def resolved(self, spec: ModelSpec) -> LocalModel | None:
        """The resolution of ``spec`` if it was resolved before (no I/O, no lock: a dict read
        is atomic), for the event loop's fast path; else None (call :meth:`resolve` in a thread)."""
        return self._resolved.get((spec.model, spec.chat_format, spec.context_window))

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
            llm = _Llama(
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
        """Run one chat completion; ``on_chunk`` gets each llama.cpp stream chunk. Stops at
        the first token sampled after ``cancelled`` is set (the per-token hook sees every
        token, also those llama-cpp-python holds back as a partial UTF-8 character or a
        possible stop sequence) and counts the tokens as they are sampled."""
        out = Generation()
        parts: list[str] = []
        t0 = time.perf_counter()
        with self._use(lm) as llm:
            if cancelled.is_set():  # gone while this request waited for the model (or its load)
                out.cancelled = True
                return out
            vocab, is_eog = llama_cpp.llama_model_get_vocab(llm.model), llama_cpp.llama_vocab_is_eog

            def on_token(token: int) -> bool:
                if out.ttft_s is None:
                    out.ttft_s = time.perf_counter() - t0
                    out.prompt_tokens = llm.n_tokens  # the prompt is evaluated; this token is not yet
                if not is_eog(vocab, token):  # llama-cpp-python's own count leaves end-of-turn out
                    out.completion_tokens += 1
                    self.tokens_generated += 1
                if cancelled.is_set():
                    out.cancelled = True
                    return True
                return False

            llm.on_token = on_token
            try:
                gen = llm.create_chat_completion(**kwargs, stream=True)
                try:
                    for chunk in gen:
                        choices = chunk["choices"]
                        if choices:
                            choice = choices[0]
                            content = choice["delta"].get("content")
                            if content:
                                parts.append(content)
                            if choice.get("finish_reason"):
                                out.finish_reason = choice["finish_reason"]
                        if on_chunk is not None:
                            on_chunk(chunk)
                finally:
                    gen.close()
            except ValueError as e:  # prompt beyond n_ctx, a grammar llama.cpp rejects
                raise UpstreamBadRequest(f"local model: {e}", code="context_length_exceeded") from None
            finally:
                llm.on_token = None
            if out.ttft_s is None:
                out.prompt_tokens = llm.n_tokens
        if out.cancelled:
            out.finish_reason = None  # llama-cpp-python says "length" for a generation we ended
        self.last_ttft_s = out.ttft_s
        out.text = "".join(parts)
        return out


def runtime_from(edge: Any) -> LlamaRuntime:
    """The runtime an :class:`~tiergate_edge.settings.EdgeSettings` describes."""
    return LlamaRuntime(models_dir=edge.models_dir, n_ctx_cap=edge.n_ctx_cap, n_threads=edge.n_threads,
                        n_batch=edge.n_batch, seed=edge.seed, memory_budget_mb=edge.memory_budget_mb,
                        prompt_cache_mb=edge.prompt_cache_mb)

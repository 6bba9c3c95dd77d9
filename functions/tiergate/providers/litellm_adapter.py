"""The ``litellm`` adapter: 100+ providers through ``litellm.acompletion``.

This is the only module that imports litellm, and it does so lazily, on the first call:
``import litellm`` costs seconds, which a cold start that only needs the native adapter
must not pay. ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set before that import so it never
touches the network.

We use litellm strictly as a library: one call per attempt (``num_retries=0``: retries,
fallbacks and budgets are the gateway's), plain dicts out (``model_dump()``), and its
exceptions translated by *type* into :mod:`tiergate.errors`. Its module globals
(callbacks, cache, ...) are never touched, and ``litellm.proxy`` is never imported.

Timeouts follow the native adapter: a non-streaming call finishes within ``timeout_s``;
a stream's first chunk, and each next one, must arrive within ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from tiergate import errors
from tiergate.config.catalog import ModelSpec
from tiergate.providers import http1
from tiergate.providers.base import ProviderCall
from tiergate.providers.error_mapping import (
    error_for_status,
    error_for_transport,
    interrupted,
    parse_retry_after,
)
from tiergate.providers.passthrough import NativeWire, PassesThrough

# Parameters we set ourselves; a caller's copy in ``body`` must not override them.
_RESERVED = frozenset({"model", "stream", "stream_options", "api_base", "base_url", "api_key", "timeout",
                       "num_retries", "max_retries", "extra_headers", "drop_params"})


def _import_litellm() -> ModuleType:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    # Not a behaviour switch: it only stops litellm printing "Give Feedback / Get Help"
    # banners to stdout on every provider error (noise in Lambda logs; we log errors ourselves).
    litellm.suppress_debug_info = True
    return litellm


class LiteLLMProvider(PassesThrough):
    """Provider over ``litellm.acompletion``; litellm is imported on the first call."""

    def __init__(self) -> None:
        self._litellm: ModuleType | None = None
        self._classes: tuple[tuple[type[BaseException], str], ...] = ()
        # Anthropic's and OpenAI's own APIs are reached natively (Messages, Responses) by a
        # plain POST, not through litellm: see tiergate.providers.passthrough for why.
        self._pool = http1.LoopClient()
        self._wire = NativeWire(self._pool, bearer_auth=False, upstream_model=_provider_model)

    @property
    def loaded(self) -> bool:
        """Whether litellm has been imported by this provider (prewarm or a first call)."""
        return self._litellm is not None

    def warm(self) -> None:
        """Import litellm now (at init under Lambda SnapStart, where it is snapshotted)."""
        self._lib()

    def _lib(self) -> ModuleType:
        if self._litellm is None:
            lib = _import_litellm()
            self._classes = _exception_table(lib)
            self._litellm = lib
        return self._litellm

    def _kwargs(self, call: ProviderCall, stream: bool) -> dict[str, Any]:
        dep = call.deployment
        # drop_params: what the endpoint refuses and litellm would forward anyway (top_k to OpenAI).
        dropped = dep.drop_params or frozenset()
        kw = {k: v for k, v in call.body.items() if k not in _RESERVED and k not in dropped}
        headers = {**dep.extra_headers, **call.extra_headers}
        kw.update(model=dep.model, timeout=call.timeout_s, num_retries=0, max_retries=0,
                  # Parameters a provider cannot take are dropped, as LiteLLM's proxy does; the
                  # router has already checked the capabilities that matter (tools, vision, json).
                  drop_params=True,
                  # With ``tools``, litellm 1.106 otherwise imports its MCP bridge, which pulls in
                  # litellm.proxy (and the ``mcp`` package): we never want either. We pass only
                  # function tools, so the bridge has nothing to do.
                  _skip_mcp_handler=True)
        if dep.api_base:
            kw["api_base"] = dep.api_base
        if call.api_key:
            kw["api_key"] = call.api_key
        if headers:
            kw["extra_headers"] = headers
        if stream:
            kw["stream"] = True
            kw["stream_options"] = {"include_usage": True}
        return kw

    async def complete(self, call: ProviderCall) -> dict[str, Any]:
        lib = self._lib()
        dep_id = call.deployment.deployment_id
        try:
            async with asyncio.timeout(call.timeout_s):
                resp = await lib.acompletion(**self._kwargs(call, False))
        except Exception as e:  # noqa: BLE001 - every failure is translated below, by type
            raise self._translate(e, dep_id) from e
        return resp.model_dump()

    async def stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        lib = self._lib()
        dep_id = call.deployment.deployment_id
        n = 0
        try:
            async with asyncio.timeout(call.timeout_s):
                wrapper = await lib.acompletion(**self._kwargs(call, True))
            it = wrapper.__aiter__()
            while True:
                async with asyncio.timeout(call.timeout_s):
                    try:
                        chunk = await it.__anext__()
                    except StopAsyncIteration:
                        return
                n += 1
                yield chunk.model_dump()
        except errors.GatewayError:
            raise
        except Exception as e:  # noqa: BLE001 - translated by type
            if n:
                raise interrupted(dep_id, e, n) from e
            raise self._translate(e, dep_id) from e

    async def embed(self, call: ProviderCall) -> dict[str, Any]:
        """``litellm.aembedding`` (OpenAI, Cohere, Bedrock, Gemini, Voyage, ...), floats out."""
        lib = self._lib()
        dep = call.deployment
        kw = {k: v for k, v in call.body.items() if k not in _RESERVED and k != "encoding_format"}
        kw.update(model=dep.model, timeout=call.timeout_s, num_retries=0, max_retries=0, drop_params=True)
        if dep.api_base:
            kw["api_base"] = dep.api_base
        if call.api_key:
            kw["api_key"] = call.api_key
        headers = {**dep.extra_headers, **call.extra_headers}
        if headers:
            kw["extra_headers"] = headers
        try:
            async with asyncio.timeout(call.timeout_s):
                resp = await lib.aembedding(**kw)
        except Exception as e:  # noqa: BLE001 - translated by type
            raise self._translate(e, dep.deployment_id) from e
        out = resp.model_dump()
        out["data"] = [d if isinstance(d, dict) else dict(d) for d in out.get("data") or ()]
        return out

    def _translate(self, exc: BaseException, dep_id: str) -> errors.UpstreamError:
        """litellm (or asyncio/httpx) exception -> gateway error, by exception type."""
        if isinstance(exc, errors.UpstreamError):
            return exc
        kind = next((k for cls, k in self._classes if isinstance(exc, cls)), None)
        status = getattr(exc, "status_code", None)
        response = getattr(exc, "response", None)
        # litellm keeps the provider's response headers (Retry-After) on litellm_response_headers.
        headers = (getattr(exc, "litellm_response_headers", None) or getattr(response, "headers", None)
                   or getattr(exc, "headers", None))
        message = getattr(exc, "message", None) or str(exc)
        details: dict[str, Any] = {"deployment": dep_id, "cause": type(exc).__name__}
        if isinstance(status, int):
            details["upstream_status"] = status
        text = f"{dep_id}: {message}"
        if kind == "context":
            return errors.UpstreamBadRequest(text, code="context_length_exceeded", **details)
        if kind == "rate":
            return errors.UpstreamRateLimited(text, retry_after=parse_retry_after(headers), **details)
        if kind == "auth":
            return errors.UpstreamAuthFailed(text, **details)
        if kind == "timeout":
            return errors.UpstreamTimeout(text, **details)
        if kind in ("connect", "server", None):
            # litellm reports a refused connection as APIConnectionError or InternalServerError
            # depending on the provider: the transport exception in the cause chain decides.
            transport = _transport_cause(exc)
            if transport is not None:
                import httpx  # a litellm dependency, already imported with it

                err = error_for_transport(
                    transport, dep_id,
                    unreachable=(httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                                 httpx.UnsupportedProtocol, httpx.ProxyError),
                    timeouts=(httpx.TimeoutException, TimeoutError))
                err.details = {**details, **err.details}
                return err
        if kind == "connect":
            return errors.UpstreamUnavailable(text, **details)
        if kind == "server":
            return errors.UpstreamServerError(text, **details)
        if kind == "bad":
            return errors.UpstreamBadRequest(text, **details)
        if isinstance(exc, TimeoutError):
            return errors.UpstreamTimeout(f"{dep_id}: upstream timed out", **details)
        if isinstance(status, int) and status >= 400:
            return error_for_status(status, headers, message, dep_id)
        return errors.UpstreamServerError(text, **details)

    async def aclose(self) -> None:
        # litellm owns its HTTP clients (cached per provider/api_base); ours is the native pool.
        self._pool.close()


def _provider_model(spec: ModelSpec) -> str:
    """The provider's own model name: ``anthropic/claude-x`` -> ``claude-x``."""
    return spec.upstream_model or spec.model.split("/", 1)[-1]


def _transport_cause(exc: BaseException) -> BaseException | None:
    """The first httpx transport exception (connect, timeout, protocol) in ``exc``'s chain."""
    import httpx  # a litellm dependency, already imported with it

    cause: BaseException | None = exc
    for _ in range(10):
        cause = cause.__cause__ or cause.__context__ if cause is not None else None
        if cause is None:
            return None
        if isinstance(cause, httpx.TransportError):
            return cause
    return None


def _exception_table(lib: ModuleType) -> tuple[tuple[type[BaseException], str], ...]:
    """Most specific first: ContextWindowExceededError is a BadRequestError, MidStreamFallbackError
    a ServiceUnavailableError, and so on."""
    names = [
        ("ContextWindowExceededError", "context"),
        ("RateLimitError", "rate"),
        ("AuthenticationError", "auth"),
        ("PermissionDeniedError", "auth"),
        ("Timeout", "timeout"),
        ("APIConnectionError", "connect"),
        ("MidStreamFallbackError", "server"),
        ("ServiceUnavailableError", "server"),
        ("InternalServerError", "server"),
        ("BadGatewayError", "server"),
        ("BadRequestError", "bad"),
        ("NotFoundError", "bad"),
        ("UnprocessableEntityError", "bad"),
        ("UnsupportedParamsError", "bad"),
        ("APIResponseValidationError", "server"),
    ]
    return tuple((getattr(lib, n), k) for n, k in names if isinstance(getattr(lib, n, None), type))

"""The offload adapter: the core's ``openai-compatible`` provider, watched.

Registered in place of the native adapter on the edge. A call to the cloud that fails
at connect time marks the cloud down at once (so the executor falls back to local and
the next requests route local or defer without waiting for the probe); while the cloud
is down, calls fail fast without touching the network and without counting against the
deployment's circuit (the probe, not the breaker, decides when it is back).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tiergate.errors import OffloadUnavailable, UpstreamUnavailable
from tiergate.providers.base import Provider, ProviderCall
from tiergate_edge.connectivity import CloudHealth


class CloudUnreachableError(OffloadUnavailable):
    """Nothing reached the cloud. Retryable, so the executor moves on to the local
    fallback when the plan has one; when it has none, the class survives to the chat
    route, which answers 503 ``cloud_unreachable`` or defers the request."""

    retryable = True


def _unreachable(dep: str, why: str, *, counts: bool) -> CloudUnreachableError:
    e = CloudUnreachableError(f"{dep}: the cloud is unreachable ({why})")
    e.counts_against_deployment = counts
    return e


def _fast_fail(dep: str) -> CloudUnreachableError:
    # Not counted against the circuit: the probe, not the breaker, decides when it is back.
    return _unreachable(dep, "marked down, waiting for the health probe", counts=False)


class WatchedCloudProvider:
    def __init__(self, inner: Provider, health: CloudHealth, cloud_api_base: str | None) -> None:
        self._inner = inner
        self._health = health
        self._base = cloud_api_base.rstrip("/") if cloud_api_base else None

    def _is_cloud(self, call: ProviderCall) -> bool:
        return self._base is not None and (call.deployment.api_base or "").rstrip("/") == self._base

    async def complete(self, call: ProviderCall) -> dict[str, Any]:
        if not self._is_cloud(call):
            return await self._inner.complete(call)
        if self._health.state == "down":
            raise _fast_fail(call.deployment.deployment_id)
        try:
            return await self._inner.complete(call)
        except UpstreamUnavailable as e:
            self._health.mark_down(e.message)
            raise _unreachable(call.deployment.deployment_id, e.message, counts=True) from e

    async def stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        if not self._is_cloud(call):
            async for c in self._inner.stream(call):
                yield c
            return
        if self._health.state == "down":
            raise _fast_fail(call.deployment.deployment_id)
        try:
            async for c in self._inner.stream(call):
                yield c
        except UpstreamUnavailable as e:
            self._health.mark_down(e.message)
            raise _unreachable(call.deployment.deployment_id, e.message, counts=True) from e

    # The optional parts of the contract (embeddings, native passthrough), watched the same way.

    async def embed(self, call: ProviderCall) -> dict[str, Any]:
        return await self._watched(call, self._inner.embed)  # type: ignore[attr-defined]

    async def native(self, call: ProviderCall) -> dict[str, Any]:
        return await self._watched(call, self._inner.native)  # type: ignore[attr-defined]

    async def count_tokens(self, call: ProviderCall) -> dict[str, Any]:
        return await self._watched(call, self._inner.count_tokens)  # type: ignore[attr-defined]

    async def native_stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        if self._is_cloud(call) and self._health.state == "down":
            raise _fast_fail(call.deployment.deployment_id)
        try:
            async for c in self._inner.native_stream(call):  # type: ignore[attr-defined]
                yield c
        except UpstreamUnavailable as e:
            if not self._is_cloud(call):
                raise
            self._health.mark_down(e.message)
            raise _unreachable(call.deployment.deployment_id, e.message, counts=True) from e

    async def _watched(self, call: ProviderCall, fn: Callable[[ProviderCall], Awaitable[dict[str, Any]]]
                       ) -> dict[str, Any]:
        if not self._is_cloud(call):
            return await fn(call)
        if self._health.state == "down":
            raise _fast_fail(call.deployment.deployment_id)
        try:
            return await fn(call)
        except UpstreamUnavailable as e:
            self._health.mark_down(e.message)
            raise _unreachable(call.deployment.deployment_id, e.message, counts=True) from e

    async def aclose(self) -> None:
        await self._inner.aclose()

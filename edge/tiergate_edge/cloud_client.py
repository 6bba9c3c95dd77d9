"""The agent's own calls to the cloud gateway (queue drain, usage sync).

Interactive offloads go through the core executor and the ``openai-compatible``
adapter; these background calls are plain HTTP with the agent's cloud key.
"""

from __future__ import annotations

from typing import Any

import httpx


class CloudUnreachable(Exception):
    """Nothing reached the cloud (connect refused/timeout, DNS): safe to retry later."""


class CloudClient:
    def __init__(self, base_url: str, api_key: str | None, client: httpx.AsyncClient, *,
                 timeout_s: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._client = client
        self._timeout = timeout_s

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"content-type": "application/json"}
        if self._key:
            h["authorization"] = f"Bearer {self._key}"
        h.update(extra or {})
        return h

    async def _post(self, path: str, payload: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        try:
            r = await self._client.post(f"{self.base_url}{path}", json=payload, headers=headers,
                                        timeout=self._timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise CloudUnreachable(f"{type(e).__name__}: {e}") from e
        except httpx.TransportError as e:
            # Sent, but the answer was lost (read timeout, reset): the idempotency key makes a
            # retry safe, so report it like an unreachable cloud.
            raise CloudUnreachable(f"{type(e).__name__}: {e}") from e
        try:
            data = r.json()
        except ValueError:
            data = {"error": {"message": r.text[:500], "type": "api_error", "code": "bad_cloud_response"}}
        return r.status_code, data

    async def chat(self, body: dict[str, Any], *, idempotency_key: str) -> tuple[int, Any]:
        """POST /v1/chat/completions (non-streaming) with an ``Idempotency-Key``."""
        payload = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        return await self._post("/v1/chat/completions", payload, self._headers({"idempotency-key": idempotency_key}))

    async def ingest_usage(self, records: list[dict[str, Any]]) -> tuple[int, Any]:
        """POST /v1/usage/ingest ``{"records": [...]}``; each record has a unique ``id``."""
        return await self._post("/v1/usage/ingest", {"records": records}, self._headers())

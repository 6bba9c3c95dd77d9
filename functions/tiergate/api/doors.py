"""What every OpenAI-shaped door shares: building the request object from a validated
chat body, and rendering the gateway's answer (JSON, SSE, a deferred job)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tiergate.api.responses import JSONResponse
from tiergate.api.sse_response import EventStreamResponse
from tiergate.errors import GatewayError
from tiergate.gateway import SSE_DONE, Completed, Deferred, Streaming, sse
from tiergate.providers.base import wire_of
from tiergate.request import GatewayRequest, NativeBody, hints_of, trace_of
from tiergate.services import Services


def chat_request(services: Services, request: Request, body: dict[str, Any], *, door: str = "chat",
                 task_hint: str | None = None, native: NativeBody | None = None) -> GatewayRequest:
    routing = services.catalog.routing
    return GatewayRequest.from_chat(
        body, aliases=services.catalog.aliases, default_model=routing.default_model, keywords=routing.keywords,
        door=door, hints=hints_of(request.headers), task_hint=task_hint,
        idempotency_key=request.headers.get("idempotency-key"), native=native,
        trace=trace_of(request.headers), client_gone=client_gone(request))


def client_gone(request: Request) -> Callable[[], Awaitable[None]]:
    """An awaitable factory that returns when the client disconnects. Call it only after the
    body was read: it reads the ASGI channel, whose next message then is the disconnect
    (uvicorn sends it when the connection closes, or once the response is complete)."""
    receive = request.receive

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    return gone


async def openai_events(s: Streaming, shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                        ) -> AsyncIterator[bytes]:
    """``chat.completion.chunk`` events (``shape`` re-shapes each one: the legacy
    completions door), ``[DONE]`` last (after the gateway settled); a mid-stream failure
    ends with an OpenAI-shaped error event instead."""
    try:
        async for chunk in s.chunks:
            if not s.include_usage and chunk.get("usage"):
                if not chunk.get("choices"):
                    continue  # the usage-only final chunk the client did not ask for
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
            if shape is not None:
                yield sse(shape(chunk))
            else:
                wire = wire_of(chunk)  # an unchanged upstream chunk: its own bytes
                yield wire if wire is not None else sse(chunk)
    except GatewayError as e:
        yield sse({"error": {"message": f"upstream stream interrupted: {e.message}", "type": e.type,
                             "code": "stream_interrupted", "param": None}})
        return
    finally:
        await s.chunks.aclose()  # type: ignore[attr-defined]
    yield SSE_DONE


def deferred(job: Deferred) -> JSONResponse:
    return JSONResponse({"id": job.job_id, "object": "tiergate.job", "status": "queued"}, status_code=202,
                        headers={"location": f"/v1/jobs/{job.job_id}"})


def openai_response(result: Completed | Streaming | Deferred) -> Response:
    if isinstance(result, Deferred):
        return deferred(result)
    if isinstance(result, Streaming):
        return EventStreamResponse(openai_events(result), result.headers, on_close=result.aclose)
    return JSONResponse(result.response, status_code=result.status, headers=result.headers)

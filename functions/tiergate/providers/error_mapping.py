"""Upstream failures -> the gateway's error classes, by HTTP status and by exception type
(never by message text). Shared by every adapter: the native one passes aiohttp's
transport exception types, the LiteLLM adapter httpx's."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson

from tiergate import errors

_MAX_ERROR_TEXT = 500

def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or HTTP-date)."""
    ms = _header(headers, "retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def upstream_error_fields(body: bytes | str | Any) -> tuple[str, str | None, str | None]:
    """``(message, type, code)`` from an OpenAI or Anthropic error body, else its text."""
    data = body
    if isinstance(body, bytes | str):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return text.strip()[:_MAX_ERROR_TEXT] or "(empty body)", None, None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or data.get("detail")
            code = err.get("code")
            return (str(msg)[:_MAX_ERROR_TEXT] if msg else orjson.dumps(data)[:_MAX_ERROR_TEXT].decode(),
                    err.get("type") if isinstance(err.get("type"), str) else None,
                    str(code) if code is not None else None)
        if isinstance(err, str):
            return err[:_MAX_ERROR_TEXT], None, None
    return str(data)[:_MAX_ERROR_TEXT], None, None


def error_for_status(status: int, headers: Mapping[str, str] | None, body: Any,
                     deployment: str) -> errors.UpstreamError:
    """The gateway error for an upstream HTTP error status (by status, never by text)."""
    message, etype, code = upstream_error_fields(body)
    details: dict[str, Any] = {"deployment": deployment, "upstream_status": status}
    if etype:
        details["upstream_type"] = etype
    if code:
        details["upstream_code"] = code
    text = f"{deployment}: upstream returned {status}: {message}"
    if status == 429:
        return errors.UpstreamRateLimited(text, retry_after=parse_retry_after(headers), **details)
    if status in (401, 403):
        return errors.UpstreamAuthFailed(text, **details)
    if status in (408, 504):
        return errors.UpstreamTimeout(text, **details)
    if status >= 500:
        retry_after = parse_retry_after(headers)
        if retry_after is not None:
            details["retry_after"] = retry_after
        return errors.UpstreamServerError(text, **details)
    if code == "context_length_exceeded":
        return errors.UpstreamBadRequest(text, code="context_length_exceeded", **details)
    return errors.UpstreamBadRequest(text, **details)


def error_for_transport(exc: BaseException, deployment: str, *,
                        unreachable: tuple[type[BaseException], ...],
                        timeouts: tuple[type[BaseException], ...]) -> errors.UpstreamError:
    """The gateway error for a transport/asyncio failure before any chunk was delivered.

    ``unreachable``/``timeouts`` are the exception types of the HTTP stack in use (aiohttp
    here; the LiteLLM adapter passes httpx's)."""
    details = {"deployment": deployment, "cause": type(exc).__name__}
    if isinstance(exc, unreachable):
        return errors.UpstreamUnavailable(f"{deployment}: cannot reach upstream ({type(exc).__name__})", **details)
    if isinstance(exc, timeouts):
        return errors.UpstreamTimeout(f"{deployment}: upstream timed out", **details)
    return errors.UpstreamServerError(
        f"{deployment}: upstream connection failed ({type(exc).__name__}: {exc})", **details)


def interrupted(deployment: str, cause: BaseException | str, chunks: int) -> errors.StreamInterrupted:
    reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
    return errors.StreamInterrupted(
        f"{deployment}: upstream stream broke off after {chunks} chunk(s): {reason}",
        deployment=deployment, chunks=chunks)

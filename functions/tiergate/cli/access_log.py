"""The access log of ``tiergate serve``: one line per request, in uvicorn's format
(``INFO:     127.0.0.1:50412 - "POST /v1/chat/completions HTTP/1.1" 200 OK``), on stdout.

uvicorn's own access log goes through :mod:`logging` for every request (a LogRecord, a
copied record for its formatter, a lock, a write and a flush: ~3% of the CPU of a request
at 16 connections). This wrapper formats the line itself when the response starts and
writes every line of one event-loop turn in one write: under concurrency many responses
start in one turn. A line waits at most until the loop's next turn; it is lost only if the
process dies inside the turn that started its response.

When stdout goes away (``tiergate serve | head``: a broken pipe, or a full disk) the log
stops with one notice on stderr; requests go on being answered.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from http import HTTPStatus
from typing import TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PHRASES = {s.value: s.phrase for s in HTTPStatus}


class AccessLog:
    """An ASGI wrapper around ``app`` that logs each HTTP request's status line."""

    def __init__(self, app: ASGIApp, stream: TextIO | None = None) -> None:
        self.app = app
        self._stream = stream
        self._pending: list[str] = []
        self._broken = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        cycle = getattr(send, "__self__", None)
        if hasattr(cycle, "on_response_start"):
            # tiergate serve's HTTP protocol reports the start itself: no wrapper around
            # send, which a stream calls for every event.
            cycle.on_response_start = functools.partial(self.line, scope)
            await self.app(scope, receive, send)
            return

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.line(scope, message["status"])
            await send(message)

        await self.app(scope, receive, send_logged)

    def line(self, scope: Scope, status: int) -> None:
        if self._broken:
            return
        client = scope.get("client")
        addr = f"{client[0]}:{client[1]}" if client else "-"
        path = scope["path"]  # in ASGI it includes root_path, as uvicorn logs it
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("ascii", "replace")
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(f'INFO:     {addr} - "{scope["method"]} {path} HTTP/{scope["http_version"]}" '
                             f'{status} {_PHRASES.get(status, "")}\n')

    def flush(self) -> None:
        """Write the lines waiting (the loop calls this once per turn that logged)."""
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        stream = self._stream or sys.stdout  # looked up late: tests and runners replace sys.stdout
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as e:  # ValueError: the stream was closed
            # A log nobody reads must not fail every request's loop turn with a traceback.
            self._broken = True
            try:
                sys.stderr.write(f"tiergate: access log stopped: stdout is unusable ({e})\n")
            except (OSError, ValueError):
                pass

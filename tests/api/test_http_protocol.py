"""tiergate.cli.http_protocol under a real uvicorn server: a sized response leaves in one
write (head and body together), a stream's head leaves before its first event, and
keep-alive, ``connection: close`` and HEAD still behave as HTTP says."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from tiergate.api.sse_response import BODY_FOLLOWS, EventStreamResponse
from tiergate.cli.access_log import AccessLog
from tiergate.cli.http_protocol import CoalescingHttpToolsProtocol

WRITES: list[bytes] = []
RELEASE = threading.Event()


class _CountingProtocol(CoalescingHttpToolsProtocol):
    """Records every write the cycle makes to the real transport."""

    def connection_made(self, transport: Any) -> None:
        real_write = transport.write

        class _Counted:
            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

            def write(self, data: bytes) -> None:
                WRITES.append(bytes(data))
                real_write(data)

        super().connection_made(_Counted())  # type: ignore[arg-type]


async def _app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/boom":
        raise RuntimeError("the app failed before it answered")
    if scope["path"] == "/sse":  # the gateway's own event-stream response
        async def events():  # type: ignore[no-untyped-def]
            for i in range(4):
                yield f"data: {i}\n\n".encode()

        await EventStreamResponse(events())(scope, receive, send)
        return
    if scope["path"] == "/json":
        body = b'{"ok":true}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    elif scope["path"] == "/events":  # an event stream whose first event is in hand (BODY_FOLLOWS)
        await send({"type": "http.response.start", "status": 200, BODY_FOLLOWS: True,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(2):
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:  # an event stream: its first event waits until the test has seen the head
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        while not RELEASE.is_set():
            await asyncio.sleep(0.01)
        for i in range(3):
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


LOG = io.StringIO()


def _serve(app: Any) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, http=_CountingProtocol, log_level="critical", lifespan="off"))
    t = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(5)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    yield from _serve(_app)


@pytest.fixture(scope="module")
def logged_server() -> Iterator[str]:
    """The app behind tiergate serve's access log, as ``tiergate serve`` runs it."""
    yield from _serve(AccessLog(_app, stream=LOG))


def test_a_sized_response_is_one_write_and_keep_alive_holds(server: str) -> None:
    WRITES.clear()
    with httpx.Client(base_url=server) as c:
        answers = [c.post("/json", content=b"{}") for _ in range(3)]
    assert [(r.status_code, r.json()) for r in answers] == [(200, {"ok": True})] * 3
    assert len(WRITES) == 3  # each: status line, headers and body in one write
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b'\r\n\r\n{"ok":true}') for w in WRITES)


def test_connection_close_and_head_are_answered_whole(server: str) -> None:
    r = httpx.post(server + "/json", content=b"{}", headers={"connection": "close"})
    assert r.status_code == 200 and r.json() == {"ok": True} and r.headers["connection"] == "close"
    h = httpx.head(server + "/json")
    assert h.status_code == 200 and h.content == b"" and h.headers["content-length"] == "11"


def test_a_streams_head_leaves_before_its_first_event(server: str) -> None:
    RELEASE.clear()
    with httpx.stream("POST", server + "/stream", content=b"{}", timeout=5) as r:
        assert r.status_code == 200  # the head arrived while the app still holds its events
        RELEASE.set()
        assert r.read() == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


def test_a_stream_whose_first_event_follows_sends_head_and_event_in_one_write(server: str) -> None:
    WRITES.clear()
    with httpx.stream("POST", server + "/events", content=b"{}", timeout=5) as r:
        assert r.status_code == 200
        assert r.read() == b"data: 0\n\ndata: 1\n\n"
    assert WRITES[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert WRITES[0].endswith(b"\r\n\r\n9\r\ndata: 0\n\n\r\n")  # the head and the first chunk together
    assert [w for w in WRITES[1:]] == [b"9\r\ndata: 1\n\n\r\n", b"0\r\n\r\n"]


def test_the_access_log_has_a_line_for_every_answer_the_server_itself_gave(logged_server: str) -> None:
    # The protocol tells the log of each response's start, so uvicorn's own 500 for an app
    # that failed before answering is logged too (a wrapper around the app's send never saw it).
    LOG.seek(0)
    LOG.truncate()
    WRITES.clear()
    with httpx.Client(base_url=logged_server) as c:
        assert c.post("/boom", content=b"{}").status_code == 500
        with c.stream("POST", "/events", content=b"{}") as r:
            assert r.read() == b"data: 0\n\ndata: 1\n\n"
    deadline = time.monotonic() + 5
    while LOG.getvalue().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = [line.split(" - ", 1)[1] for line in LOG.getvalue().splitlines()]
    assert lines == ['"POST /boom HTTP/1.1" 500 Internal Server Error', '"POST /events HTTP/1.1" 200 OK']
    assert b"9\r\ndata: 1\n\n\r\n" in WRITES  # the stream's events on the wire, one chunk each


def test_the_gateways_event_stream_writes_each_event_as_one_chunk_without_send(server: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # EventStreamResponse hands every event after the first to the protocol's write_chunk:
    # the same bytes on the wire as send would write, one write per event.
    from tiergate.cli import http_protocol

    sent: list[bytes | None] = []
    real = http_protocol._CoalescingCycle.send

    async def counted(self, message):  # type: ignore[no-untyped-def]
        sent.append(message.get("body"))
        await real(self, message)

    monkeypatch.setattr(http_protocol._CoalescingCycle, "send", counted)
    WRITES.clear()
    with httpx.stream("POST", server + "/sse", content=b"{}", timeout=5) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.read() == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n"
    assert WRITES[0].endswith(b"\r\n\r\n9\r\ndata: 0\n\n\r\n")  # head and first event together
    assert WRITES[1:] == [b"9\r\ndata: 1\n\n\r\n", b"9\r\ndata: 2\n\n\r\n", b"9\r\ndata: 3\n\n\r\n", b"0\r\n\r\n"]
    assert sent == [None, b"data: 0\n\n", b""]  # the head, the first event, the end: the rest bypassed send

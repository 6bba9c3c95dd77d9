"""tiergate.providers.http1 against a raw asyncio TCP server that writes exact bytes: the
three body framings (split anywhere), keep-alive reuse and its limits, interim
responses, and each failure class."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from tiergate.providers import http1

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def _read_request(r: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await r.readexactly(length)


class Server:
    """Serves ``handler(reader, writer, n)`` per request; ``n`` counts requests; records
    how many connections were accepted and the request heads seen."""

    def __init__(self, handler: Handler) -> None:
        self.handler, self.connections, self.heads, self.n = handler, 0, [], 0
        self.srv: asyncio.Server | None = None

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head, body = await _read_request(r)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append((head, body))
                self.n += 1
                await self.handler(r, w, self.n)
                if w.is_closing():
                    return
        finally:
            w.close()

    async def __aenter__(self) -> str:
        self.srv = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        port = self.srv.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    async def __aexit__(self, *exc: object) -> None:
        assert self.srv is not None
        self.srv.close()


async def _write(w: asyncio.StreamWriter, *parts: bytes, gap: float = 0.0) -> None:
    for p in parts:
        w.write(p)
        await w.drain()
        if gap:
            await asyncio.sleep(gap)


def _client() -> http1.Client:
    return http1.Client(keepalive_s=30)


async def _post(c: http1.Client, url: str, **kw: float | None) -> http1.Response:
    return await c.post(url, b'{"x":1}', {"content-type": "application/json"},
                        connect_timeout=kw.get("connect_timeout", 2.0), read_timeout=kw.get("read_timeout", 2.0))


async def test_a_sized_body_and_keep_alive_reuse_one_connection() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        body = b'{"n":%d}' % n
        await _write(w, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nX-A: 2\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body), body)

    s = Server(handler)
    async with s as url:
        c = _client()
        got = []
        for _ in range(3):
            resp = await _post(c, url)
            got.append((resp.status, resp.headers["content-type"], resp.headers["x-a"], await resp.read()))
            resp.release()
        c.close()
    assert got == [(200, "application/json", "1, 2", b'{"n":%d}' % n) for n in (1, 2, 3)]
    assert s.connections == 1
    head, body = s.heads[0]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and b"\r\nhost: 127.0.0.1:" in head
    assert b"content-length: 7\r\n" in head and body == b'{"x":1}'


async def test_chunked_bodies_split_anywhere_arrive_whole_and_in_order() -> None:
    events = [b"data: {\"i\":%d}\n\n" % i for i in range(5)]
    wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\nTrailer: x\r\n\r\n"

    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        await _write(w, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        step = 1 + n  # a different split for each request: 2, 3, 4 ... bytes per write
        await _write(w, *[wire[i:i + step] for i in range(0, len(wire), step)], gap=0.0005)

    s = Server(handler)
    async with s as url:
        c = _client()
        for _ in range(3):
            resp = await _post(c, url)
            pieces = [p async for p in resp.iter_any()]
            assert all(pieces) and b"".join(pieces) == b"".join(events)
            resp.release()
        c.close()
    assert s.connections == 1  # each body read to its end: the connection was kept


async def test_connection_close_and_an_eof_framed_body_are_not_reused() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        if n % 2:
            await _write(w, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        else:
            await _write(w, b"HTTP/1.1 200 OK\r\n\r\n", b"until ", b"the end")
        w.close()

    s = Server(handler)
    async with s as url:
        c = _client()
        bodies = []
        for _ in range(2):
            resp = await _post(c, url)
            bodies.append(await resp.read())
            resp.release()
        c.close()
    assert bodies == [b"ok", b"until the end"] and s.connections == 2


async def test_an_interim_response_is_skipped_and_204_has_no_body() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        if n == 1:
            await _write(w, b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n1")
        else:
            await _write(w, b"HTTP/1.1 204 No Content\r\n\r\n")

    s = Server(handler)
    async with s as url:
        c = _client()
        r1 = await _post(c, url)
        first = (r1.status, await r1.read())
        r1.release()
        r2 = await _post(c, url)
        second = (r2.status, await r2.read())
        r2.release()
        c.close()
    assert first == (201, b"1") and second == (204, b"") and s.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        await _write(w, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await asyncio.sleep(0.01)
        w.close()  # an idle timeout on the server's side

    s = Server(handler)
    async with s as url:
        c = _client()
        for _ in range(2):
            resp = await _post(c, url)
            assert await resp.read() == b"ok"
            resp.release()
            await asyncio.sleep(0.1)  # the server's FIN arrives while the connection is idle
        c.close()
    assert s.connections == 2


async def test_an_expired_idle_connection_is_replaced() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        await _write(w, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    s = Server(handler)
    async with s as url:
        c = http1.Client(keepalive_s=0.05)
        for _ in range(2):
            resp = await _post(c, url)
            assert await resp.read() == b"ok"
            resp.release()
            await asyncio.sleep(0.1)
        c.close()
    assert s.connections == 2


async def test_a_released_unread_body_closes_its_connection() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        await _write(w, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")  # the rest never comes

    s = Server(handler)
    async with s as url:
        c = _client()
        resp = await _post(c, url)
        resp.release()  # a client that left mid-body
        resp2 = await _post(c, url)
        assert resp2.status == 200
        resp2.release()
        c.close()
    assert s.connections == 2


async def test_a_body_cut_short_is_disconnected_and_a_silent_server_a_read_timeout() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        if n == 1:
            await _write(w, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            w.close()
        else:
            await _write(w, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            await asyncio.sleep(5)

    s = Server(handler)
    async with s as url:
        c = _client()
        resp = await _post(c, url)
        with pytest.raises(http1.Disconnected):
            await resp.read()
        resp.release()
        resp = await _post(c, url, read_timeout=0.1)
        with pytest.raises(http1.ReadTimeout) as e:
            await resp.read()
        assert isinstance(e.value, TimeoutError)
        resp.release()
        c.close()


async def test_no_response_garbage_and_a_huge_head_fail_clearly() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        if n == 1:
            w.close()  # nothing at all
        elif n == 2:
            await _write(w, b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        else:
            await _write(w, b"HTTP/1.1 200 OK\r\nX: " + b"a" * (http1.MAX_HEAD_BYTES + 10))

    s = Server(handler)
    async with s as url:
        c = _client()
        with pytest.raises(http1.Disconnected):
            await _post(c, url)
        with pytest.raises(http1.ProtocolError, match="not an HTTP/1.x response"):
            await _post(c, url)
        with pytest.raises(http1.ProtocolError, match="too large"):
            await _post(c, url)
        with pytest.raises(http1.ProtocolError, match="line break"):
            await c.post(url, b"", {"x-evil": "a\r\nx-injected: 1"}, connect_timeout=1, read_timeout=1)
        c.close()


async def test_nothing_listening_is_a_connect_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    c = _client()
    with pytest.raises(http1.ConnectError, match="cannot connect"):
        await _post(c, f"http://127.0.0.1:{port}/v1/chat/completions")
    with pytest.raises(http1.ConnectError, match="not an http"):
        await _post(c, "ftp://example.invalid/x")


async def test_calls_past_the_connection_limit_wait_for_a_released_one() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.02)
        await _write(w, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % (n % 10))

    s = Server(handler)
    async with s as url:
        c = http1.Client(max_connections=2)

        async def one() -> bytes:
            resp = await _post(c, url)
            try:
                return await resp.read()
            finally:
                resp.release()

        bodies = await asyncio.gather(*(one() for _ in range(6)))
        assert c.open == 2
        c.close()
        await asyncio.sleep(0.01)
        assert c.open == 0
    assert sorted(bodies) == sorted(b"%d" % n for n in range(1, 7)) and s.connections == 2


async def test_a_stream_arms_one_read_timer_not_one_per_chunk_and_it_still_fires() -> None:
    """Each gap (0.12 s) is under the read timeout (0.3 s) while the whole stream (1.2 s)
    is not: every chunk arrives. Then the server goes silent: ReadTimeout. Between the two,
    the loop was asked for a timer only a few times (once per chunk before: a call_later
    and its cancel for every read of a stream)."""
    chunks = [b"%x\r\n%s\r\n" % (len(p), p) for p in (b"data: %d\n\n" % i for i in range(10))]

    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        await _write(w, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await _write(w, *chunks, gap=0.12)
        await asyncio.sleep(5)

    loop = asyncio.get_running_loop()
    timers = 0
    real_call_at, real_call_later = loop.call_at, loop.call_later

    def call_at(when, callback, *a, **kw):  # type: ignore[no-untyped-def]
        nonlocal timers
        timers += getattr(callback, "__module__", None) == http1.__name__  # the client's, not the server's sleeps
        return real_call_at(when, callback, *a, **kw)

    def call_later(when, callback, *a, **kw):  # type: ignore[no-untyped-def]
        nonlocal timers
        timers += getattr(callback, "__module__", None) == http1.__name__  # the client's, not the server's sleeps
        return real_call_later(when, callback, *a, **kw)

    s = Server(handler)
    async with s as url:
        c = _client()
        resp = await _post(c, url, read_timeout=0.3)
        got = b""
        loop.call_at, loop.call_later = call_at, call_later  # type: ignore[method-assign]
        try:
            with pytest.raises(http1.ReadTimeout):
                async for piece in resp.iter_any():
                    got += piece
        finally:
            loop.call_at, loop.call_later = real_call_at, real_call_later  # type: ignore[method-assign]
        resp.release()
        c.close()
    assert got == b"".join(b"data: %d\n\n" % i for i in range(10))
    assert timers <= 6, timers  # the lazily re-armed timer: ~1 per timeout period, not 1 per chunk


async def test_a_negative_or_garbled_chunk_size_is_a_protocol_error() -> None:
    async def handler(r, w, n):  # type: ignore[no-untyped-def]
        size = b"-5" if n == 1 else b"zz"
        await _write(w, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nhello\r\n0\r\n\r\n")

    s = Server(handler)
    async with s as url:
        c = _client()
        for _ in range(2):
            resp = await _post(c, url)
            with pytest.raises(http1.ProtocolError):
                await resp.read()
            resp.release()
        c.close()

"""A small HTTP/1.1 keep-alive client: every upstream call the gateway makes itself (the
native adapter's chat, embeddings and native passthrough calls; LiteLLM makes its own).

aiohttp's request machinery (a ClientRequest and ClientResponse per call, header
multidicts, its connector, a read-timeout timer rescheduled on every read) cost ~75 us of
CPU per pooled POST on this machine; this client ~23 us (the same loopback upstream, 16
calls in flight, CPU per call, in one run). A chat call needs little of HTTP: one POST with
a body in hand, a response framed by ``content-length``, ``transfer-encoding: chunked``
or the end of the connection, and connections kept alive per origin. So that is all this
does. No redirects, cookies, proxies, compression (``accept-encoding: identity`` is sent)
or request streaming; https through asyncio's TLS with the verifying context of
:mod:`tiergate.providers.http_client` (the system trust store, loaded on first use). The
other calls (embeddings, Anthropic Messages and Responses passthrough) are the same kind
of POST, so one client serves them all: aiohttp, the former second client, cost a second
connection pool per upstream and its import at every cold start (import + first response
335 -> 289 ms median without it, ``bench/cold_start --baseline``).

Contract:

- :meth:`Client.fetch` POSTs and reads the whole answer within a deadline.
- :meth:`Client.post` returns a :class:`Response` once its head arrived; its body is read
  with :meth:`Response.read` (whole) or :meth:`Response.iter_any` (as it arrives), and
  :meth:`Response.release` gives the connection back (to the pool when the body was read
  to its end and the server keeps it alive; closed otherwise). Always release.
- Failures are :class:`TransportError` subclasses: :class:`ConnectError` (nothing reached
  the server), :class:`ReadTimeout` (also a :class:`TimeoutError`: no byte for
  ``read_timeout`` seconds), :class:`Disconnected` (the connection ended before the
  response did), :class:`ProtocolError` (not HTTP/1.x).
- Deadlines beyond those are the caller's (``asyncio.timeout`` around the call).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

from tiergate.providers.http_client import verified_context

#: A response head larger than this is refused (a misdirected or hostile endpoint).
MAX_HEAD_BYTES = 64 * 1024
#: Reading pauses while this much of a body waits for its reader.
HIGH_WATER = 4 * 1024 * 1024


class TransportError(Exception):
    """The HTTP exchange failed below the HTTP status (no usable response)."""


class ConnectError(TransportError):
    """The connection could not be made: nothing reached the server."""


class CertificateError(ConnectError):
    """The server's TLS certificate was refused (not trusted, expired, another name)."""


class ReadTimeout(TransportError, TimeoutError):
    """No byte arrived within the read timeout."""


class Disconnected(TransportError):
    """The connection ended before the response did."""


class ProtocolError(TransportError):
    """The peer did not answer in HTTP/1.x."""


class _Conn(asyncio.Protocol):
    """One connection: bytes received wait in ``buf`` for the response reading them."""

    def __init__(self, on_lost: Callable[[], None] | None = None) -> None:
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.eof = False
        self.error: BaseException | None = None
        self.paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # The read timeout: one timer per connection, re-armed only when it fires (see more()).
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = 0.0
        self._since = 0.0  # when the current wait began

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        w = self.waiter  # _wake(), inline: this runs for every chunk of a stream
        if w is not None and not w.done():
            w.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self._on_lost is not None:
            self._on_lost()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def consumed(self) -> None:
        if self.paused and len(self.buf) < HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    @property
    def usable(self) -> bool:
        t = self.transport
        return not self.eof and t is not None and not t.is_closing() and not self.buf

    def wait(self, read_timeout: float | None) -> asyncio.Future[None]:
        """A future done when more bytes arrive or the connection ends; its result is
        :data:`_TIMED_OUT` after ``read_timeout`` seconds without any byte. Raises
        Disconnected if the connection already ended.

        Why one timer per connection instead of one per wait: a streamed chunk is one wait,
        and a ``call_later`` plus its cancel (a timer handle, a heap push) per chunk was a
        visible part of the CPU of a stream. The timer is armed once and, when it fires
        while a later wait is still within its time, re-armed for the rest."""
        if self.eof:
            raise Disconnected(f"connection closed by the server{_cause(self.error)}")
        loop = self._loop or asyncio.get_running_loop()
        w = self.waiter = loop.create_future()
        if read_timeout is not None:
            self._timeout = read_timeout
            self._since = loop.time()
            if self._timer is None:
                self._timer = loop.call_at(self._since + read_timeout, self._check_timeout)
        return w

    def _check_timeout(self) -> None:
        self._timer = None
        w = self.waiter
        if w is None or w.done():
            return  # not waiting: the next wait arms the timer again
        loop = self._loop or asyncio.get_running_loop()
        due = self._since + self._timeout
        if loop.time() >= due:
            w.set_result(_TIMED_OUT)
        else:
            self._timer = loop.call_at(due, self._check_timeout)

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def more(self, read_timeout: float | None) -> None:
        """Wait until more bytes arrive (or the connection ends); ReadTimeout after
        ``read_timeout`` seconds without any byte."""
        w = self.wait(read_timeout)
        try:
            await w
        finally:
            self.waiter = None
        if w.result() is _TIMED_OUT:  # type: ignore[comparison-overlap]
            raise ReadTimeout(f"no data from the upstream for {read_timeout:g} s")

    def close(self) -> None:
        self.stop_timer()
        if self.transport is not None:
            self.transport.close()


_TIMED_OUT: Any = object()


def _expire(w: asyncio.Future[Any]) -> None:
    if not w.done():
        w.set_result(_TIMED_OUT)


def _cause(exc: BaseException | None) -> str:
    return f" ({type(exc).__name__}: {exc})" if exc is not None else ""


class Response:
    """A response whose head was read; see the module docstring for reading and releasing."""

    def __init__(self, client: Client, origin: tuple[str, str, int], conn: _Conn, status: int,
                 headers: dict[str, str], keep_alive: bool, framing: str, length: int,
                 read_timeout: float | None) -> None:
        self._client, self._origin, self._conn = client, origin, conn
        self.status, self.headers = status, headers
        self._keep_alive = keep_alive
        self._framing = framing  # "none", "length", "chunked", "eof"
        self._left = length      # length: body bytes to come; chunked: bytes left of this chunk
        self._chunk_state = 0    # chunked: 0 size line, 1 data, 2 CRLF after data, 3 trailers
        self._read_timeout = read_timeout
        self.done = framing == "none"
        self._released = False

    # --- reading --------------------------------------------------------------------

    def _take(self) -> bytes:
        """The body bytes now in the buffer (consumed from it); sets ``done`` at the end."""
        buf = self._conn.buf
        if self._framing == "length":
            n = min(self._left, len(buf))
            out = bytes(buf[:n])
            del buf[:n]
            self._left -= n
            self.done = self._left == 0
        elif self._framing == "eof":
            out = bytes(buf)
            buf.clear()
            self.done = self._conn.eof
        else:
            out = self._dechunk(buf)
        if self._conn.paused:
            self._conn.consumed()
        return out

    def _dechunk(self, buf: bytearray) -> bytes:
        parts: list[bytes] = []
        while True:
            st = self._chunk_state
            if st == 0:
                nl = buf.find(b"\r\n")
                if nl < 0:
                    if len(buf) > 1024:
                        raise ProtocolError("chunk size line too long")
                    break
                try:
                    size = int(buf[:nl], 16)  # int() strips the whitespace itself
                except ValueError:  # a chunk extension (";name=value") or not a size at all
                    size_text = bytes(buf[:nl]).split(b";", 1)[0].strip()
                    try:
                        size = int(size_text, 16)
                    except ValueError:
                        raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
                if size < 0:
                    raise ProtocolError("negative chunk size")
                end = nl + 2 + size
                if size and len(buf) >= end + 2 and buf[end:end + 2] == b"\r\n":
                    # The whole chunk is here (a streamed event usually is): one step, not three.
                    parts.append(bytes(buf[nl + 2:end]))
                    del buf[:end + 2]
                    continue
                del buf[:nl + 2]
                if size == 0:
                    self._chunk_state = 3
                else:
                    self._left, self._chunk_state = size, 1
            elif st == 1:
                if not buf:
                    break
                n = min(self._left, len(buf))
                parts.append(bytes(buf[:n]))
                del buf[:n]
                self._left -= n
                if self._left == 0:
                    self._chunk_state = 2
            elif st == 2:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                del buf[:2]
                self._chunk_state = 0
            else:  # trailers: lines until an empty one
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                del buf[:nl + 2]
                if nl == 0:
                    self.done = True
                    break
        return b"".join(parts) if len(parts) != 1 else parts[0]

    async def iter_any(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (never an empty piece), until the body's end."""
        conn = self._conn
        timeout = self._read_timeout
        while not self.done:
            if conn.buf:
                data = self._take()
                if data:
                    yield data
                    continue
                if self.done:
                    break
            if conn.eof:
                if self._framing == "eof":
                    self.done = True
                    break
                raise Disconnected(f"the response ended before its body did{_cause(conn.error)}")
            # conn.more() inlined: a stream waits once per chunk, and a coroutine less counts.
            w = conn.wait(timeout)
            try:
                await w
            finally:
                conn.waiter = None
            if w.result() is _TIMED_OUT:
                raise ReadTimeout(f"no data from the upstream for {timeout:g} s")

    async def read(self) -> bytes:
        """The whole body."""
        parts = [piece async for piece in self.iter_any()]
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back: pooled when the body was read whole and kept alive."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        conn.stop_timer()
        if self.done and self._keep_alive and conn.usable:
            self._client._put(self._origin, conn)
        else:
            conn.close()


class _Target:
    """A URL split once: origin, request target and Host header."""

    __slots__ = ("origin", "target", "host_header")

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.origin = (parts.scheme, parts.hostname, port)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default = port == (443 if parts.scheme == "https" else 80)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self.host_header = host if default else f"{host}:{port}"


class Client:
    """Keep-alive connections per origin (scheme, host, port), bound to one event loop;
    at most ``max_connections`` open at once (a call past it waits for one to be released
    or closed, then reuses or replaces it)."""

    def __init__(self, *, keepalive_s: float = 30.0, max_connections: int = 1000,
                 ssl_context: Callable[[], ssl.SSLContext] | None = None) -> None:
        self._keepalive = keepalive_s
        self._limit = max_connections
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], collections.deque[tuple[_Conn, float]]] = {}
        self._targets: dict[str, _Target] = {}
        self.open = 0  # connections made and not yet lost (idle ones included)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def _put(self, origin: tuple[str, str, int], conn: _Conn) -> None:
        self._idle.setdefault(origin, collections.deque()).append((conn, time.monotonic()))
        self._wake_one()

    def _lost(self) -> None:
        self.open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    async def _acquire(self, origin: tuple[str, str, int], connect_timeout: float) -> _Conn:
        while True:
            conn = self._pooled(origin)
            if conn is not None:
                return conn
            if self.open < self._limit:
                return await self._connect(origin, connect_timeout)
            if self._close_idle_elsewhere():
                continue  # an idle connection to another origin made room: connecting is allowed now
            w = asyncio.get_running_loop().create_future()
            self._waiters.append(w)
            await w

    def _close_idle_elsewhere(self) -> bool:
        for idle in self._idle.values():
            if idle:
                conn = idle.popleft()[0]  # the longest idle
                conn.close()
                self.open -= 1  # counted now: its connection_lost comes later (then not counted twice)
                conn._on_lost = None
                return True
        return False

    def _pooled(self, origin: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn, since = idle.pop()  # the most recently used: the least likely to be stale
            if conn.usable and now - since < self._keepalive:
                return conn
            conn.close()  # stale: its connection_lost frees its place
        return None

    async def _connect(self, origin: tuple[str, str, int], connect_timeout: float) -> _Conn:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        ctx = self._ssl_context() if scheme == "https" else None
        self.open += 1  # counted from now, so that concurrent calls respect the limit
        made = False
        try:
            async with asyncio.timeout(connect_timeout):
                _t, conn = await loop.create_connection(
                    lambda: _Conn(self._lost), host, port, ssl=ctx,
                    server_hostname=host if ctx is not None else None)
            made = True
        except TimeoutError:
            raise ConnectError(f"connecting to {host}:{port} timed out after {connect_timeout:g} s") from None
        except ssl.SSLCertVerificationError as e:
            raise CertificateError(f"{host}:{port} presented a certificate that is refused ({e.verify_message})") from e
        except OSError as e:  # refused, unresolvable, unreachable, a TLS handshake failure
            raise ConnectError(f"cannot connect to {host}:{port} ({type(e).__name__}: {e})") from e
        finally:
            if not made:
                self._lost()
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        return self._ssl() if self._ssl is not None else verified_context()

    async def fetch(self, url: str, body: bytes, headers: dict[str, str], *, timeout: float,
                    connect_timeout: float) -> tuple[int, dict[str, str], bytes]:
        """POST ``body`` and read the whole answer: ``(status, headers, body)``, all within
        ``timeout`` seconds (``TimeoutError`` past it; connecting within ``connect_timeout``)."""
        async with asyncio.timeout(timeout):
            resp = await self.post(url, body, headers, connect_timeout=connect_timeout, read_timeout=None)
            try:
                return resp.status, resp.headers, await resp.read()
            finally:
                resp.release()

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, connect_timeout: float,
                   read_timeout: float | None) -> Response:
        """POST ``body`` with ``headers`` (lower-case names; ``host`` and ``content-length``
        are set here) and return the response once its head arrived."""
        t = self._targets.get(url)
        if t is None:
            t = _Target(url)
            if len(self._targets) < 1024:
                self._targets[url] = t
        head = [f"POST {t.target} HTTP/1.1\r\nhost: {t.host_header}\r\ncontent-length: {len(body)}\r\n"]
        for k, v in headers.items():
            if "\n" in k or "\n" in v or "\r" in k or "\r" in v:
                raise ProtocolError(f"request header {k!r} contains a line break")
            head.append(f"{k}: {v}\r\n")
        head.append("\r\n")
        try:
            data = "".join(head).encode("latin-1") + body
        except UnicodeEncodeError:
            raise ProtocolError("a request header is not latin-1") from None
        conn = self._pooled(t.origin) or await self._acquire(t.origin, connect_timeout)
        assert conn.transport is not None
        conn.transport.write(data)
        try:
            return await self._head(t.origin, conn, read_timeout)
        except BaseException:
            conn.close()
            raise

    async def _head(self, origin: tuple[str, str, int], conn: _Conn, read_timeout: float | None) -> Response:
        buf = conn.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise ProtocolError("response head too large")
                if conn.eof:
                    raise Disconnected(f"connection closed before a response{_cause(conn.error)}")
                await conn.more(read_timeout)
                continue
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[:end + 4]
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise ProtocolError(f"not an HTTP/1.x response: {lines[0][:60]!r}")
            status = int(code)
            if 100 <= status < 200:
                continue  # an interim response (100 Continue, 103 Early Hints): the real one follows
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    continue
                name, value = name.strip().lower(), value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            connection = headers.get("connection", "").lower()
            keep_alive = version == "HTTP/1.1" and "close" not in connection
            te = headers.get("transfer-encoding", "").lower()
            if status in (204, 304):
                framing, length = "none", 0
            elif "chunked" in te:
                framing, length = "chunked", 0
            elif "content-length" in headers:
                try:
                    length = int(headers["content-length"])
                except ValueError:
                    raise ProtocolError("bad content-length") from None
                framing = "length" if length else "none"
            else:
                framing, length, keep_alive = "eof", 0, False
            return Response(self, origin, conn, status, headers, keep_alive, framing, length, read_timeout)

    def close(self) -> None:
        """Close every pooled connection."""
        for idle in self._idle.values():
            while idle:
                idle.pop()[0].close()
        self._idle.clear()


class LoopClient:
    """A :class:`Client` for the running event loop, made there on first use: a
    connection belongs to the loop that opened it, so a call on another loop (tests, some
    serverless runtimes) gets a fresh client; the old one's sockets close with it."""

    def __init__(self, **client_kwargs: Any) -> None:
        self._kwargs = client_kwargs
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> Client:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = Client(**self._kwargs), loop
        return self._client

    def close(self) -> None:
        """Close the pooled connections (only on their own loop; elsewhere they are dropped)."""
        client, loop = self._client, self._loop
        self._client = self._loop = None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if client is not None and loop is running:
            client.close()

"""``tiergate serve``'s access log (tiergate.cli.access_log): uvicorn's line, one write per loop turn."""

from __future__ import annotations

import asyncio
import io

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from tiergate.cli.access_log import AccessLog


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


async def _ok(request):  # type: ignore[no-untyped-def]
    return PlainTextResponse("ok", status_code=201)


async def _stream(request):  # type: ignore[no-untyped-def]
    async def parts():  # type: ignore[no-untyped-def]
        for i in range(3):
            yield f"part{i};"

    return StreamingResponse(parts())


def _app() -> Starlette:
    return Starlette(routes=[Route("/ok", _ok, methods=["POST"]), Route("/stream", _stream)])


async def test_a_line_per_request_in_uvicorns_format_written_once_per_loop_turn() -> None:
    out = CountingStream()
    logged = AccessLog(_app(), stream=out)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=logged), base_url="http://t") as c:
        answers = await asyncio.gather(*(c.post("/ok") for _ in range(8)), c.get("/nowhere?x=1"),
                                       c.get("/stream"))
        await asyncio.sleep(0)  # the turn after the last response started: its line is written
    assert [r.status_code for r in answers] == [201] * 8 + [404, 200]
    assert answers[-1].text == "part0;part1;part2;"  # a streamed body passes through whole
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines.count('INFO:     127.0.0.1:123 - "POST /ok HTTP/1.1" 201 Created') == 8
    assert 'INFO:     127.0.0.1:123 - "GET /nowhere?x=1 HTTP/1.1" 404 Not Found' in lines
    assert 'INFO:     127.0.0.1:123 - "GET /stream HTTP/1.1" 200 OK' in lines
    assert out.writes < len(lines)  # concurrent requests' lines share a write


async def test_lifespan_and_other_scopes_pass_through_unlogged() -> None:
    out = io.StringIO()
    seen: list[str] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append(scope["type"])

    await AccessLog(app, stream=out)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert seen == ["lifespan"] and out.getvalue() == ""


class BrokenPipeStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def write(self, s: str) -> int:
        self.attempts += 1
        raise BrokenPipeError(32, "Broken pipe")


async def test_a_broken_stdout_stops_the_log_once_and_requests_still_answer(capsys) -> None:  # type: ignore[no-untyped-def]
    # `tiergate serve | head`: once head exits, every loop turn's write failed with a traceback.
    out = BrokenPipeStream()
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    logged = AccessLog(_app(), stream=out)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=logged), base_url="http://t") as c:
        for _ in range(3):
            r = await c.post("/ok")
            assert r.status_code == 201
            await asyncio.sleep(0)
    assert errors == []
    assert out.attempts == 1  # stopped after the first failure, not tried on every request
    assert capsys.readouterr().err.count("access log stopped") == 1

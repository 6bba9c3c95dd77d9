"""A streamed chunk leaves the gateway as its upstream sent it: the same bytes, not a
re-encoding of them. OpenAI-compatible servers format their JSON in their own ways
(spaces after separators, ``\\u00e9`` escapes, key order); a client reading the gateway
sees what it would have seen from the upstream, and the gateway does not encode every
chunk again. Only what the gateway changes is encoded anew: the usage chunk, which gains
``cost_usd``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest

# Written by hand, formatted as orjson never would: spaces, an escaped non-ASCII character.
CONTENT = [
    b'data: {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "m", '
    b'"choices": [{"index": 0, "delta": {"role": "assistant", "content": "caf\\u00e9"}, "finish_reason": null}]}\n\n',
    b'data: {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "m", '
    b'"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n',
]
USAGE = (b'data: {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], '
         b'"usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}\n\n')


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event in [*CONTENT, USAGE, b"data: [DONE]\n\n"]:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def raw_upstream() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def _gateway(gateway_factory, api_base: str) -> str:  # type: ignore[no-untyped-def]
    url, _app = gateway_factory(f"""
models:
  - name: raw
    model: openai/m
    adapter: openai-compatible
    tier: 1
    api_base: "{api_base}"
    input_cost_per_mtok: 1
    output_cost_per_mtok: 2
""")
    return url


def test_an_unchanged_chunk_is_forwarded_byte_for_byte_and_the_usage_chunk_priced(gateway_factory, raw_upstream):
    url = _gateway(gateway_factory, raw_upstream)
    with httpx.stream("POST", url + "/v1/chat/completions", timeout=10,
                      json={"model": "raw", "stream": True, "stream_options": {"include_usage": True},
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200
        body = r.read()
    events = [e + b"\n\n" for e in body.split(b"\n\n") if e]
    assert events[:2] == CONTENT  # as the raw_upstream wrote them
    usage = orjson.loads(events[2].removeprefix(b"data: "))
    assert usage["usage"]["prompt_tokens"] == 5 and usage["usage"]["completion_tokens"] == 2
    assert usage["usage"]["cost_usd"] == pytest.approx((5 * 1 + 2 * 2) / 1e6)
    assert events[3:] == [b"data: [DONE]\n\n"]
    # The SDK reads them as ever.
    assert orjson.loads(events[0].removeprefix(b"data: "))["choices"][0]["delta"]["content"] == "café"


def test_without_include_usage_the_usage_chunk_is_dropped_and_the_rest_still_forwarded(gateway_factory, raw_upstream):
    url = _gateway(gateway_factory, raw_upstream)
    with httpx.stream("POST", url + "/v1/chat/completions", timeout=10,
                      json={"model": "raw", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        body = r.read()
    assert body == b"".join(CONTENT) + b"data: [DONE]\n\n"

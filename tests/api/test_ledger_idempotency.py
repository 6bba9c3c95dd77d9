"""Usage is recorded before the answer is acknowledged (plain and streamed), retries with
an Idempotency-Key do not pay twice, and edge usage is ingested exactly once."""

from __future__ import annotations

import json

import httpx
import openai

CAT = """
models:
  - {name: m, model: openai/ledger-m, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 1, output_cost_per_mtok: 2}
"""
MASTER = {"authorization": "Bearer sk-master"}


def _usage(url: str) -> list[dict]:
    r = httpx.get(url + "/v1/usage", params={"period": "all"}, headers=MASTER)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_plain_and_streamed_requests_are_in_the_ledger_when_answered(gateway_factory):
    url, _ = gateway_factory(CAT, master_key="sk-master")
    c = openai.OpenAI(base_url=url + "/v1", api_key="sk-master", max_retries=0)
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "ledger one"}])
    chunks = list(c.chat.completions.create(model="m", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "ledger two words"}]))
    # No waiting: each record was durable before its response was acknowledged.
    recs = sorted(_usage(url), key=lambda x: x["ts"])
    assert [x["outcome"] for x in recs] == ["ok", "ok"]
    assert recs[0]["completion_tokens"] == r.usage.completion_tokens
    assert recs[1]["completion_tokens"] == chunks[-1].usage.completion_tokens
    assert recs[1]["cost_usd"] == round(chunks[-1].usage.model_extra["cost_usd"], 9)


def test_idempotency_key_replays_without_paying_twice(gateway_factory, sim):
    url, _ = gateway_factory(CAT, master_key="sk-master")
    body = {"model": "m", "messages": [{"role": "user", "content": "pay once"}]}
    h = {**MASTER, "idempotency-key": "retry-123"}
    first = httpx.post(url + "/v1/chat/completions", json=body, headers=h)
    again = httpx.post(url + "/v1/chat/completions", json=body, headers=h)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["x-tiergate-idempotent-replay"] == "true"
    assert len(sim.requests(model="ledger-m")) == 1
    assert len(_usage(url)) == 1
    other = httpx.post(url + "/v1/chat/completions", json={**body, "temperature": 1}, headers=h)
    assert other.status_code == 409 and other.json()["error"]["type"] == "invalid_request_error"


def test_edge_usage_ingest_is_idempotent_per_record(gateway_factory):
    url, _ = gateway_factory(CAT, master_key="sk-master")
    records = [{"id": f"chatcmpl-edge-{i}", "ts": 1795351200 + i, "model": "local", "tier": 0,
                "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0, "source": "edge", "device": "pi"}
               for i in range(3)]
    r1 = httpx.post(url + "/v1/usage/ingest", json={"records": records}, headers=MASTER)
    r2 = httpx.post(url + "/v1/usage/ingest", json={"records": records}, headers=MASTER)
    assert r1.json()["accepted"] == 3 and r2.json() == {**r2.json(), "accepted": 0, "duplicates": 3}
    got = [x for x in _usage(url) if x.get("source") == "edge"]
    assert sorted(x["request_id"] for x in got) == [f"chatcmpl-edge-{i}" for i in range(3)]
    bad = httpx.post(url + "/v1/usage/ingest", json={"records": [{"ts": 1}]}, headers=MASTER)
    assert bad.status_code == 400 and "id" in bad.json()["error"]["message"]


def test_client_leaving_mid_stream_stops_the_upstream_and_bills_what_was_produced(gateway_factory, sim):
    import socket
    import time

    url, _ = gateway_factory(CAT, master_key="sk-master")
    sim.script("ledger-m", [{"chunks": 40, "chunk_delay_ms": 100}])
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "long story"}]})
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Authorization: Bearer sk-master\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    got = b""
    while got.count(b"data:") < 3:
        got += s.recv(65536)
    s.close()
    t = time.monotonic()
    recs = []
    while time.monotonic() - t < 3 and not recs:  # the stream would run ~4 s more
        recs = _usage(url)
        time.sleep(0.05)
    assert [r["outcome"] for r in recs] == ["client_disconnected"]
    assert 0 < recs[0]["completion_tokens"] < 40

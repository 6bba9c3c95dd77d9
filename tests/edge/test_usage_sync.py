"""Local usage records reach the cloud's ingest once it is up, and only once acknowledged."""

from __future__ import annotations

import time
from typing import Any

import openai
from fastapi import FastAPI, Request

from tests.edge.conftest import start_app


def ingest_app(seen: list[dict[str, Any]], status: list[int]) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/usage/ingest")
    async def ingest(request: Request) -> Any:
        from fastapi.responses import JSONResponse

        body = await request.json()
        if status[0] == 200:
            seen.extend(body["records"])
        return JSONResponse({"accepted": len(body["records"])}, status_code=status[0])

    return app


def test_local_usage_is_synced_to_the_cloud(edge_agent) -> None:
    seen: list[dict[str, Any]] = []
    status = [503]
    url, server, thread = start_app(ingest_app(seen, status))
    try:
        agent = edge_agent(url, usage_sync_interval_s=0.2)
        client = openai.OpenAI(base_url=agent.base_url, api_key="unused")
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hello"}], max_tokens=3)
        rid = raw.headers["x-request-id"]
        outbox = agent.agent.outbox
        t = time.monotonic()
        while outbox.pending() == 0 and time.monotonic() - t < 5:
            time.sleep(0.05)
        time.sleep(0.6)                       # a few sync rounds against a failing ingest
        assert outbox.pending() == 1 and seen == []
        status[0] = 200
        t = time.monotonic()
        while outbox.pending() and time.monotonic() - t < 10:
            time.sleep(0.05)
        assert outbox.pending() == 0
        [rec] = seen
        # the local answer was scored (a cascade step): its record id is "<request id>.<step>"
        assert rec["id"].split(".")[0] == rid and rec["model"] == "local" and rec["source"] == "edge"
        assert rec["completion_tokens"] == raw.parse().usage.completion_tokens
    finally:
        server.should_exit = True
        thread.join(10)


def test_local_usage_is_accepted_by_the_real_cloud_ingest(edge_agent, cloud) -> None:
    """The records the agent sends pass the cloud's strict ingest (known fields only): the
    real gateway, not a stand-in, so a field the agent adds and the ingest does not know
    shows up here (saved_usd did: every batch was refused with a 400)."""
    agent = edge_agent(cloud.url, usage_sync_interval_s=0.2)
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused")
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}], max_tokens=3)
    rid = raw.headers["x-request-id"]
    outbox = agent.agent.outbox
    sync = agent.agent.usage
    t = time.monotonic()
    while sync.synced == 0 and time.monotonic() - t < 15:
        time.sleep(0.05)
    assert sync.synced == 1 and outbox.pending() == 0, sync.last_error
    # The cloud has no master key here, so any bearer token reads as the master.
    import httpx

    data = httpx.get(cloud.url + "/v1/usage", params={"period": "all"}, timeout=10,
                     headers={"authorization": "Bearer any"}).json()["data"]
    mine = [r for r in data if r["request_id"].split(".")[0] == rid]
    assert len(mine) == 1 and mine[0]["source"] == "edge" and mine[0]["model"] == "local"
    assert mine[0]["completion_tokens"] == raw.parse().usage.completion_tokens


def test_a_record_the_cloud_refuses_is_set_aside_and_blocks_nothing(edge_agent, cloud) -> None:
    """A record the strict ingest refuses (here a forged cost, as an older or corrupt row
    would be) used to fail its whole batch with a 400 forever, and every record behind it
    waited. Now the batch goes record by record: the good ones reach the cloud, the bad
    one is kept aside (never lost) and counted in /health."""
    import httpx

    agent = edge_agent(cloud.url, usage_sync_interval_s=0.2)
    outbox = agent.agent.outbox
    outbox.add({"id": "forged-1", "source": "edge", "ts": time.time(), "cost_usd": 999.0})
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused")
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}], max_tokens=3)
    rid = raw.headers["x-request-id"]
    sync = agent.agent.usage
    t = time.monotonic()
    while (sync.synced == 0 or outbox.pending()) and time.monotonic() - t < 15:
        time.sleep(0.05)
    assert (sync.synced, sync.rejected, outbox.pending(), outbox.rejected()) == (1, 1, 0, 1), sync.last_error
    data = httpx.get(cloud.url + "/v1/usage", params={"period": "all"}, timeout=10,
                     headers={"authorization": "Bearer any"}).json()["data"]
    assert [r["request_id"].split(".")[0] for r in data] == [rid]  # the good one, and only it
    kept = outbox._db.execute("SELECT id, record, reason FROM usage_rejected").fetchall()
    assert kept[0][0] == "forged-1" and '"cost_usd": 999.0' in kept[0][1] and "cost_usd" in kept[0][2]
    health = httpx.get(agent.url + "/health", timeout=10).json()
    assert health["edge"]["usage_outbox_rejected"] == 1 and health["edge"]["usage_outbox_pending"] == 0

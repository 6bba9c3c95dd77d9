"""Session affinity: a named session (header, ``user``, ``metadata.session_id``) or a tool
loop stays on the deployment that served its first request while it is usable, whatever
the router would pick now; TTL'd and tenant-scoped."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support import routing_data
from tiergate.routing.affinity import Affinity
from tiergate.stores.sqlite import SqliteStore

HARD = "Give a rigorous proof that sqrt(7) is irrational."
EASY = "Greet Omar warmly."
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return routing_data.train_artifact(tmp_path_factory.mktemp("affinity"))


@pytest.fixture
def gw(gateway_factory, artifact):
    return gateway_factory(routing_data.learned_catalog(artifact))[0]


def _chat(base: str, body: dict, **headers: str) -> httpx.Response:
    r = httpx.post(base + "/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize("how", ["header", "user", "metadata"])
def test_a_named_session_stays_on_its_first_deployment(gw, how):
    def ask(text: str, session: str) -> httpx.Response:
        body: dict = {"model": "auto", "messages": [{"role": "user", "content": text}]}
        headers = {}
        if how == "header":
            headers["x-tiergate-session"] = session
        elif how == "user":
            body["user"] = session
        else:
            body["metadata"] = {"session_id": session}
        return _chat(gw, body, **headers)

    assert ask(EASY, "s-1").headers["x-tiergate-model"] == "weak"
    again = ask(HARD, "s-1")  # the router alone would send this to "strong"
    assert again.headers["x-tiergate-model"] == "weak"
    assert "session affinity" in again.headers["x-tiergate-route-reason"]
    assert ask(HARD, "s-2").headers["x-tiergate-model"] == "strong"  # another session routes afresh


def test_a_tool_loop_continuation_stays_on_the_deployment_that_called_the_tool(gw):
    first = _chat(gw, {"model": "auto", "tools": TOOLS, "messages": [{"role": "user", "content": HARD}]})
    assert first.headers["x-tiergate-model"] == "strong"
    call = first.json()["choices"][0]["message"]["tool_calls"][0]
    follow = _chat(gw, {"model": "auto", "tools": TOOLS, "messages": [
        {"role": "user", "content": HARD},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "nothing found"},
        {"role": "user", "content": EASY}]})
    assert follow.headers["x-tiergate-model"] == "strong"
    assert "session affinity (tool)" in follow.headers["x-tiergate-route-reason"]


async def test_affinity_is_tenant_scoped_and_expires(tmp_path):
    now = [time.time()]
    store = SqliteStore(tmp_path / "a.sqlite3")
    try:
        aff = Affinity(store, ttl_s=60, clock=lambda: now[0])
        await aff.remember("acme", "session", "s", "weak")
        await aff.remember("acme", "session", "s", "strong")  # the first deployment wins
        assert await aff.lookup("acme", "session", "s") == "weak"
        assert await aff.lookup("globex", "session", "s") is None
    finally:
        await store.aclose()
    mem = Affinity(None, ttl_s=60, clock=lambda: now[0])
    await mem.remember("acme", "user", "u", "weak")
    assert await mem.lookup("acme", "user", "u") == "weak"
    now[0] += 61
    assert await mem.lookup("acme", "user", "u") is None

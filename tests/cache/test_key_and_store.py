"""The exact key's normalization, and the SQLite exact store (written once, size-bounded,
oldest evicted, expired entries absent, refresh only replaces older entries)."""

from __future__ import annotations

import asyncio

from tiergate.cache.key import deterministic, exact_key, semantic_scope
from tiergate.cache.sqlite import SqliteExactStore
from tiergate.cache.store import Entry

Q = {"role": "user", "content": "hello"}


def k(body, tenant="t", target="m", group="m"):
    return exact_key(tenant, target, group, body)


def test_spellings_that_cannot_change_the_answer_share_a_key():
    base = {"model": "m", "messages": [Q], "temperature": 0}
    assert k(base) == k({"messages": [{"content": "hello", "role": "user", "name": None}], "temperature": 0.0,
                         "top_p": 1, "n": 1, "presence_penalty": 0, "stream": True, "user": "u",
                         "stream_options": {"include_usage": True}, "metadata": {"a": 1}})
    assert k({**base, "max_tokens": 5}) == k({**base, "max_completion_tokens": 5})
    assert k({**base, "stop": "x"}) == k({**base, "stop": ["x"]})
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"b": 1, "a": 2}'}}]}
    same = {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{ "a":2,"b":1 }'}}]}
    assert k({**base, "messages": [Q, call, Q]}) == k({**base, "messages": [Q, same, Q]})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    assert k({**base, "tools": tools}) == k({**base, "tools": tools, "tool_choice": "auto"})
    assert k(base) == k({**base, "response_format": {"type": "text"}})


def test_anything_that_can_change_the_answer_splits_the_key():
    base = {"model": "m", "messages": [Q], "temperature": 0}
    keys = {k(base), k(base, tenant="u"), k(base, target="tier:1"), k(base, group="other"),
            k({**base, "temperature": 0.2}), k({**base, "seed": 1}), k({**base, "max_tokens": 9}),
            k({**base, "messages": [{"role": "system", "content": "be brief"}, Q]}),
            k({**base, "messages": [{"role": "user", "content": "hello!"}]}),
            k({**base, "response_format": {"type": "json_object"}}), k({**base, "stop": ["x"]}),
            k({**base, "tools": [{"type": "function", "function": {"name": "f"}}]}),
            k({**base, "tool_choice": "required"}), k({**base, "top_p": 0.5})}
    assert len(keys) == 14


def test_determinism_and_the_semantic_scope():
    assert deterministic({"temperature": 0}) and deterministic({"temperature": 0.9, "seed": 3})
    assert not deterministic({}) and not deterministic({"temperature": 0.1})
    a = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "one"}], "temperature": 0}
    b = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "two"}], "temperature": 0}
    c = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "one"}], "temperature": 0}
    scope = semantic_scope("t", "m", "m", a)
    assert scope == semantic_scope("t", "m", "m", b)       # only the last user text differs
    assert scope != semantic_scope("t", "m", "m", c)       # another system prompt: another scope
    assert scope != semantic_scope("u", "m", "m", a)       # another tenant: another scope


def _entry(key: str, at: float, ttl: float = 100, size: int = 100, tenant: str = "t") -> tuple[Entry, bytes]:
    e = Entry(key, tenant, {"choices": [{"message": {"content": "x" * size}, "finish_reason": "stop"}]}, "m", 0.01,
              at, at + ttl)
    return e, e.encode()


async def test_sqlite_store_writes_once_expires_and_refreshes_forward(tmp_path):
    s = SqliteExactStore(tmp_path / "c.sqlite3")

    async def stored_at(now: float) -> float | None:
        await s.drain()  # the write has committed (or was refused by its condition)
        reader = SqliteExactStore(tmp_path / "c.sqlite3")  # the file as another process sees it
        e = await reader.get("k", now=now)
        await reader.aclose()
        return e.stored_at if e else None

    e1, b1 = _entry("k", 1000)
    assert await s.put(e1, b1) is True
    e2, b2 = _entry("k", 1001, size=5)
    assert await s.put(e2, b2) is False                       # a live entry wins (pending, here)
    assert await stored_at(1050) == 1000
    await s.put(e2, b2)                                       # and in the file too
    assert await stored_at(1050) == 1000
    assert await stored_at(1100) is None                      # expired: absent
    e3, b3 = _entry("k", 1200)
    await s.put(e3, b3)
    assert await stored_at(1201) == 1200                      # an expired entry is replaced
    old, ob = _entry("k", 1100)
    await s.put(old, ob, replace=True)
    assert await stored_at(1201) == 1200                      # a refresh never goes back in time
    new, nb = _entry("k", 1300, size=7)
    await s.put(new, nb, replace=True)
    assert await stored_at(1301) == 1300
    await s.aclose()


async def test_sqlite_store_concurrent_puts_of_one_key_leave_one_winner(tmp_path):
    s = SqliteExactStore(tmp_path / "c.sqlite3")
    entries = [_entry("same", 1000 + i / 100) for i in range(20)]
    won = await asyncio.gather(*(s.put(e, b) for e, b in entries))
    assert sum(won) == 1
    await s.drain()
    assert (await s.get("same", now=1001)) == entries[won.index(True)][0]
    # Two processes (two stores on one file): the SQL condition keeps the first write.
    other = SqliteExactStore(tmp_path / "c.sqlite3")
    late, lb = _entry("same", 1000.5)
    assert await other.put(late, lb) is True      # accepted here (this process has no entry)...
    await other.drain()
    assert (await other.get("same", now=1001)).stored_at == entries[won.index(True)][0].stored_at  # ...not written
    await other.aclose()
    await s.aclose()


async def test_sqlite_store_is_size_bounded_and_evicts_the_oldest(tmp_path):
    s = SqliteExactStore(tmp_path / "c.sqlite3", max_total_bytes=64 * 1024)
    for i in range(100):
        e, b = _entry(f"k{i:03}", 1000 + i, size=2000)
        await s.put(e, b)
    await s.drain()
    st = s.stats()
    assert st["bytes"] <= 64 * 1024 and st["entries"] < 100
    assert await s.get("k000", now=1100) is None and await s.get("k099", now=1100) is not None
    # Survives a reopen with the same bound (the total is read back from the file).
    await s.aclose()
    s2 = SqliteExactStore(tmp_path / "c.sqlite3", max_total_bytes=64 * 1024)
    assert s2.stats() == st
    await s2.aclose()


def test_entries_round_trip():
    e, b = _entry("k", 5.5)
    assert Entry.decode(e.key, b) == e

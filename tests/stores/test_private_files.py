"""The SQLite store keeps its files private (finding 11): the data dir 0700, the database
and its -wal/-shm files 0600, whatever the umask; an existing 0644 file is narrowed."""

from __future__ import annotations

import os
import stat

import pytest

from tiergate.stores.base import Bump, CounterKey
from tiergate.stores.sqlite import SqliteStore


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0o022)  # the usual umask: files 0644, directories 0755
    yield
    os.umask(old)


async def test_new_store_files_are_private(tmp_path, open_umask):
    data = tmp_path / "data" / "nested"
    db = data / "tiergate.sqlite3"
    store = SqliteStore(db)
    try:
        key = CounterKey("budgets", "b#global", "d2030-01-01")
        await store.bump([Bump(key, 5, None, 2_000_000_000)], now=1_900_000_000)
        assert mode(data) == 0o700 and mode(data.parent) == 0o700
        files = sorted(p.name for p in data.rglob("*") if p.is_file())
        assert {"tiergate.sqlite3", "tiergate.sqlite3-wal", "tiergate.sqlite3-shm"} <= set(files)
        assert {p: oct(mode(next(data.rglob(p)))) for p in files} == {p: "0o600" for p in files}
        dirs = [p for p in data.rglob("*") if p.is_dir()]  # the process-liveness directory
        assert {str(p): oct(mode(p)) for p in dirs} == {str(p): "0o700" for p in dirs}
    finally:
        await store.aclose()


async def test_an_existing_readable_store_is_narrowed(tmp_path, open_umask):
    db = tmp_path / "old.sqlite3"
    db.touch(mode=0o644)
    os.chmod(db, 0o644)
    store = SqliteStore(db)
    try:
        assert mode(db) == 0o600
    finally:
        await store.aclose()


async def test_every_sqlite_file_the_gateway_and_agent_keep_is_private(tmp_path, open_umask):
    """The cache, the usage outbox, the edge job queue, its usage outbox and the semantic
    index hold prompts, answers and usage: the same 0600 files in 0700 directories."""
    from tiergate.cache.sqlite import SqliteExactStore
    from tiergate.limits.outbox import Outbox
    from tiergate_edge.jobs import JobStore, lock_queue_file
    from tiergate_edge.usage_sync import UsageOutbox
    from tiergate_edge.vector_index import SqliteVecIndex

    d = tmp_path / "agent" / "data"
    cache = SqliteExactStore(d / "cache.sqlite3")
    outbox = Outbox(d / "outbox.sqlite3")
    jobs = JobStore(tmp_path / "q" / "jobs.sqlite3")
    lock_fd = lock_queue_file(tmp_path / "q" / "jobs.sqlite3")
    edge_usage = UsageOutbox(tmp_path / "u" / "x" / "usage.sqlite3")
    index = SqliteVecIndex(tmp_path / "v" / "semantic.sqlite3", dimensions=4)
    try:
        dirs = [d, d.parent, tmp_path / "q", tmp_path / "u", tmp_path / "u" / "x", tmp_path / "v"]
        assert {str(p): oct(mode(p)) for p in dirs} == {str(p): "0o700" for p in dirs}
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert len(files) >= 6
        assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o600" for p in files}
    finally:
        os.close(lock_fd)
        await cache.aclose()
        await outbox.aclose()
        jobs.close()
        edge_usage.close()
        index.close()

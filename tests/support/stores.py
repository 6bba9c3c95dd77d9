"""Store fixtures: the same tests over every record store (SQLite, DynamoDB on dynalite)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tiergate.settings import Settings
from tiergate.stores import open_store
from tiergate.stores.base import RecordStore

MASTER = "sk-master-test"


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings_for(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], Settings]:
    def make(kind: str) -> Settings:
        base: dict[str, Any] = {"environment": "test", "master_key": MASTER, "data_dir": tmp_path,
                                "key_cache_ttl_s": 0.5}
        if kind == "dynamodb":
            base |= request.getfixturevalue("dynalite_tables")
        else:
            base |= {"store": kind, "sqlite_path": tmp_path / "tiergate.sqlite3"}
        return Settings(**base)
    return make


@pytest.fixture
def settings(store_kind: str, settings_for: Callable[[str], Settings]) -> Settings:
    return settings_for(store_kind)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RecordStore]:
    s = open_store(settings, create_tables=True)
    try:
        yield s
    finally:
        await s.aclose()

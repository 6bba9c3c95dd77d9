"""Fixtures for the budgets/rate-limit/keys suite: the same tests over every store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tiergate.config.catalog import CatalogFile, resolve
from tiergate.settings import Settings
from tiergate.stores import open_store
from tiergate.stores.base import RecordStore

MASTER = "sk-master-test"


def make_catalog(budgets: dict[str, Any] | None = None, **model_kw: Any):
    """Two cheap deployments on tiers 0 and 1 (prices in USD per 1M tokens)."""
    models = [
        {"name": "small", "model": "openai/small", "tier": 0, "input_cost_per_mtok": 1.0,
         "output_cost_per_mtok": 2.0, **model_kw},
        {"name": "big", "model": "openai/big", "tier": 1, "input_cost_per_mtok": 10.0,
         "output_cost_per_mtok": 20.0},
    ]
    return resolve(CatalogFile.model_validate({"models": models, "budgets": budgets or {}}))


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

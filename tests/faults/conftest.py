from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import Rig, rig


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_kw(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "dynamodb":
        return dict(request.getfixturevalue("dynalite_tables"))
    return {"store": "sqlite", "sqlite_path": tmp_path / "gw.sqlite3", "data_dir": tmp_path}


@pytest.fixture
async def make_rig(sim: Any, store_kw: dict[str, Any]) -> AsyncIterator[Callable[..., Any]]:
    made: list[Rig] = []

    async def make(**kw: Any) -> Rig:
        r = await rig(sim, store_kw, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.aclose()

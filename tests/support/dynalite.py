"""dynalite: a DynamoDB emulator (pure JS, LevelDB in memory) for the concurrency tests.

moto's server loses conditional updates under concurrent writers; dynalite gets them
right but has no TransactWriteItems or TTL API. ``dynalite`` (session scope) starts
``node_modules/.bin/dynalite`` on a free 127.0.0.1 port and yields its URL;
``dynalite_tables`` gives each test its own uniquely named tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.moto_server import AWS_TEST_ENV
from tests.support.procs import free_port, port_open, spawn, stop, wait_for
from tiergate.stores.base import TABLES

ROOT = Path(__file__).resolve().parents[2]
DYNALITE = ROOT / "node_modules" / ".bin" / "dynalite"


@pytest.fixture(scope="session")
def dynalite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not DYNALITE.exists():
        raise RuntimeError(f"{DYNALITE} missing: run `npm ci` in {ROOT}")
    port = free_port()
    log = tmp_path_factory.mktemp("dynalite") / "dynalite.log"
    proc = spawn([str(DYNALITE), "--host", "127.0.0.1", "--port", str(port), "--createTableMs", "0",
                  "--deleteTableMs", "0", "--updateTableMs", "0"], log=log)
    try:
        wait_for(lambda: port_open(port), timeout=30, what="dynalite", proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture
def dynalite_tables(dynalite: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a Settings(store="dynamodb") on fresh tables of dynalite."""
    for k, v in AWS_TEST_ENV.items():
        monkeypatch.setenv(k, v)
    prefix = "t" + uuid.uuid4().hex[:8]
    return {
        "store": "dynamodb",
        "dynamodb_endpoint_url": dynalite,
        **{f"table_{t}": f"{prefix}-{t}" for t in (*TABLES, "cache")},
    }

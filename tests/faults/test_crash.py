"""CI crash test (finding 1): kill -9 ``tiergate serve`` under 300 concurrent requests
against a $1 budget, restart it, drain the budget. Every upstream call has a usage
record (charged or interrupted), and recorded spend stays within the limit -- on SQLite
(dead process's holds charged at startup) and on DynamoDB via dynalite (expired holds
charged by the sweep). The long version (3 runs each, the soak) is bench/crash/run.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.crash import crash_run
from tests.support.moto_server import AWS_TEST_ENV


@pytest.mark.parametrize("store", ["sqlite", "dynamodb"])
def test_kill_9_under_load_loses_no_call_and_overspends_nothing(store, upstream, tmp_path: Path, request):
    if store == "dynamodb":
        tables = request.getfixturevalue("dynalite_tables")
        env = {**AWS_TEST_ENV, **{f"TIERGATE_{k.upper()}": str(v) for k, v in tables.items()}}
        ttl = 10  # an expired reservation is charged by the sweep: DynamoDB cannot see a dead writer
    else:
        env = {"TIERGATE_STORE": "sqlite", "TIERGATE_DATA_DIR": str(tmp_path / "data")}
        ttl = 900  # the dead process's holds are charged at startup, long before they expire
    f = crash_run(upstream, tmp_path / "run", env, store=store, requests=300, concurrency=300, limit_usd=1.0,
                  kill_after_calls=60, ttl=ttl)
    print(f.line())
    assert f.calls >= 60 and f.orphaned > 0, f  # it did die with calls in flight
    assert f.lost == 0, f
    assert f.records == f.calls + f.phantom, f
    assert f.phantom <= f.orphaned, f  # a record without a call is only ever a charged orphan
    assert f.spent <= f.limit + 1e-9 and f.recorded <= f.limit + 1e-9 and f.true <= f.limit + 1e-9, f
    assert abs(f.spent - f.recorded) < 1e-6, f

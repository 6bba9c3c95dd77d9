"""``tiergate keys ...`` as a real subprocess against a SQLite file, then the key used
through StoreAdmission."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.limits.conftest import make_catalog
from tiergate.errors import AuthenticationFailed
from tiergate.limits.store_admission import StoreAdmission
from tiergate.settings import Settings
from tiergate.stores.sqlite import SqliteStore


def cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TIERGATE_STORE": "sqlite", "TIERGATE_SQLITE_PATH": str(tmp_path / "k.sqlite3"),
           "TIERGATE_DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "tiergate.cli", "keys", *args], env=env, capture_output=True,
                          text=True, timeout=60)


async def test_keys_cli_roundtrip(tmp_path):
    r = cli(tmp_path, "create", "--tenant", "acme", "--daily-budget", "10", "--monthly-budget", "200",
            "--rpm", "60", "--tpm", "100000", "--tiers", "0-2")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["tenant"] == "acme" and made["allowed_tiers"] == [0, 1, 2] and made["rpm"] == 60
    assert made["key"].startswith("sk-tg-") and "not shown again" in r.stderr
    listed = json.loads(cli(tmp_path, "list", "--tenant", "acme").stdout)
    assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
    upd = json.loads(cli(tmp_path, "update", made["id"], "--rpm", "5").stdout)
    assert upd["rpm"] == 5 and upd["daily_budget_usd"] == 10 and upd["cache"] is None
    assert json.loads(cli(tmp_path, "update", made["id"], "--cache", "off").stdout)["cache"] == "off"

    store = SqliteStore(tmp_path / "k.sqlite3")
    settings = Settings(environment="test", master_key="m", store="sqlite", sqlite_path=tmp_path / "k.sqlite3",
                        key_cache_ttl_s=0)
    adm = StoreAdmission(settings, make_catalog(), store)
    p = await adm.authenticate(f"Bearer {made['key']}")
    assert p.tenant == "acme" and p.allowed_tiers == frozenset({0, 1, 2})
    assert cli(tmp_path, "revoke", made["id"]).returncode == 0
    with pytest.raises(AuthenticationFailed):
        await adm.authenticate(f"Bearer {made['key']}")
    await store.aclose()

    bad = cli(tmp_path, "create", "--tiers", "x")
    assert bad.returncode == 2 and "tiers look like" in bad.stderr
    missing = cli(tmp_path, "revoke", "key_0000000000000000")
    assert missing.returncode == 1 and "No key" in missing.stderr

"""SQLite: the holds of a process that died (kill -9) are charged at the next startup, at
once -- not after ``reservation_ttl_s`` -- while a live process's holds are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.limits.conftest import MASTER, make_catalog
from tests.limits.helpers import request
from tiergate.limits import budgets, usage
from tiergate.limits.store_admission import StoreAdmission
from tiergate.settings import Settings
from tiergate.stores.sqlite import SqliteStore

CFG = {"global": {"daily_usd": 10.0}, "reservation_ttl_s": 900}

HOLDER = textwrap.dedent("""
    import asyncio, sys, time
    from tests.limits.conftest import MASTER, make_catalog
    from tests.limits.helpers import request
    from tiergate.limits.store_admission import StoreAdmission
    from tiergate.settings import Settings
    from tiergate.stores.sqlite import SqliteStore

    async def main():
        s = Settings(environment="test", master_key=MASTER, store="sqlite", sqlite_path=sys.argv[1])
        adm = StoreAdmission(s, make_catalog({CFG}), SqliteStore(sys.argv[1]))
        p = await adm.authenticate("Bearer " + MASTER)
        t = await adm.admit(p, request(adm.catalog.by_id["small"], rid="held-by-" + sys.argv[2]))
        print("HELD", t.request_id, flush=True)
        time.sleep(600)  # "calling the upstream" when it dies

    asyncio.run(main())
""").replace("{CFG}", repr(CFG))


def _holder(path: Path, name: str) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), name], stdout=subprocess.PIPE, cwd=root,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(root), *os.environ.get("PYTHONPATH", "").split(os.pathsep)])})
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("HELD"), line
    return proc


async def test_holds_of_a_killed_process_are_charged_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite3"
    dead = _holder(path, "dead")
    alive = _holder(path, "alive")
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait(10)
        s = Settings(environment="test", master_key=MASTER, store="sqlite", sqlite_path=path)
        store = SqliteStore(path)
        adm = StoreAdmission(s, make_catalog(CFG), store, owns_store=True)
        now = time.time()
        orphans = await store.orphaned_holds(now=int(now))
        assert {h.meta and h.meta.count("held-by-dead") for h in orphans} == {1}
        await adm.start()  # what the app's lifespan does first
        recs = await usage.query(store, key_id="master")
        assert [(r["request_id"], r["outcome"], r["charged"]) for r in recs] == [
            ("held-by-dead", "orphaned", "reservation")]
        est = request(adm.catalog.by_id["small"]).estimate_usd
        rep = await budgets.report(store, adm.cfg, key=None, tenant=None, now=now)
        g = next(r for r in rep if r["scope"] == "global")
        # the dead one's hold is spent; the live process's hold is still only reserved
        assert g["spent_usd"] == round(est, 9) and g["reserved_usd"] == round(est, 9)
        assert await store.orphaned_holds(now=int(now)) == []
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        await adm.aclose()
    finally:
        for p in (dead, alive):
            if p.poll() is None:
                p.kill()
                p.wait(10)

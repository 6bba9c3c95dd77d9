"""Run N concurrent admissions (+ settlements) in one process; used by the race tests
in-process and from several worker processes (multiprocessing, spawn)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tests.limits.conftest import make_catalog
from tests.limits.helpers import outcome, request
from tiergate.errors import BudgetExceeded, RateLimited
from tiergate.limits.store_admission import StoreAdmission
from tiergate.settings import Settings
from tiergate.stores import open_store


async def run_clients(adm: StoreAdmission, secret: str, n: int, *, prompt: int, max_out: int,
                      settle: bool, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    principal = await adm.authenticate(f"Bearer {secret}")
    dep = adm.catalog.by_id["small"]
    admitted: list[str] = []
    rejected = {"budget": 0, "rate": 0}

    async def client(i: int) -> None:
        req = request(dep, prompt, max_out, rid=f"r{seed}-{i}")
        await asyncio.sleep(rnd.random() * 0.01)
        try:
            t = await adm.admit(principal, req)
        except BudgetExceeded:
            rejected["budget"] += 1
            return
        except RateLimited:
            rejected["rate"] += 1
            return
        admitted.append(req.request_id)
        if settle:
            await asyncio.sleep(rnd.random() * 0.02)  # the "upstream call"
            await adm.settle(t, outcome(t, prompt, rnd.randint(1, max_out)))

    await asyncio.gather(*(client(i) for i in range(n)))
    await adm.drain()
    return {"admitted": admitted, **rejected}


def worker(settings_kw: dict[str, Any], budgets_cfg: dict[str, Any], secret: str, n: int, prompt: int,
           max_out: int, settle: bool, seed: int, now: float | None) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        settings = Settings(**settings_kw)
        store = open_store(settings)
        kw = {"clock": (lambda: now)} if now is not None else {}
        adm = StoreAdmission(settings, make_catalog(budgets_cfg), store, owns_store=True, **kw)
        try:
            return await run_clients(adm, secret, n, prompt=prompt, max_out=max_out, settle=settle, seed=seed)
        finally:
            await adm.aclose()
    return asyncio.run(main())

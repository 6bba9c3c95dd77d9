"""``tiergate keys create|list|show|update|revoke``: virtual keys, straight to the store
the settings name (``TIERGATE_STORE``, ``TIERGATE_SQLITE_PATH``, table names...).

Example: ``tiergate keys create --tenant acme --daily-budget 10 --monthly-budget 200
--rpm 60 --tpm 100000 --tiers 0-2``. Output is JSON; the secret is printed once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from pydantic import ValidationError

from tiergate.errors import GatewayError
from tiergate.limits.virtual_keys import KeyCreate, KeyLimits, KeyService, VirtualKey
from tiergate.settings import Settings
from tiergate.stores import open_store


def parse_tiers(text: str) -> list[int]:
    """``"0-2"`` -> [0, 1, 2]; ``"0,3"`` -> [0, 3]."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"tiers look like 0-2 or 0,3 (got {text!r})") from None
    return sorted(out)


def _limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--daily-budget", type=float, dest="daily_budget_usd", help="USD per UTC day")
    p.add_argument("--monthly-budget", type=float, dest="monthly_budget_usd", help="USD per UTC month")
    p.add_argument("--max-cost-per-request", type=float, dest="max_cost_per_request_usd", help="USD")
    p.add_argument("--rpm", type=int)
    p.add_argument("--tpm", type=int)
    p.add_argument("--tiers", type=parse_tiers, dest="allowed_tiers", help="allowed tiers, e.g. 0-2")
    p.add_argument("--models", type=lambda s: [m for m in s.split(",") if m], dest="allowed_models",
                   help="allowed model names, comma separated")
    p.add_argument("--expires-in-days", type=float, help="the key stops working after this many days")
    p.add_argument("--cache", choices=["off", "exact", "semantic"],
                   help="response cache for this key (default: the catalog's cache section)")
    p.add_argument("--scopes", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   help="api (default), dashboard (read-only sign-in to /dashboard), or api,dashboard")


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    names = set(KeyLimits.model_fields) - {"valid_until", "metadata"}
    out = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if getattr(args, "expires_in_days", None) is not None:
        out["valid_until"] = time.time() + args.expires_in_days * 86400
    return out


def _show(vk: VirtualKey, **extra: Any) -> dict[str, Any]:
    return {"id": vk.key_id, **vk.model_dump(exclude={"key_id"}), **extra}


async def _run(args: argparse.Namespace) -> Any:
    settings = Settings()
    store = open_store(settings, create_tables=settings.dynamodb_endpoint_url is not None)
    keys = KeyService(store, cache_ttl_s=0)
    try:
        if args.keys_command == "create":
            key, secret = await keys.create(KeyCreate(tenant=args.tenant, **_fields(args)))
            return _show(key, key=secret)
        if args.keys_command == "list":
            return [_show(k) for k in await keys.list(tenant=args.tenant)]
        if args.keys_command == "show":
            return _show(await keys.get(args.key_id))
        if args.keys_command == "update":
            return _show(await keys.update(args.key_id, KeyLimits(**_fields(args)).model_dump(
                include=set(_fields(args)))))
        return _show(await keys.revoke(args.key_id))
    finally:
        await store.aclose()


def keys_command(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_run(args))
    except (GatewayError, ValidationError, ValueError) as e:
        print(f"tiergate keys: {getattr(e, 'message', e)}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if args.keys_command == "create":
        print("Store the key now: it is not shown again.", file=sys.stderr)
    return 0


def add_keys_parser(subparsers: Any) -> None:
    k = subparsers.add_parser("keys", help="virtual keys (budgets, limits, allowed tiers)")
    ks = k.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", help="create a key and print its secret once")
    c.add_argument("--tenant", default="default")
    _limit_flags(c)
    ls = ks.add_parser("list", help="list keys")
    ls.add_argument("--tenant")
    sh = ks.add_parser("show", help="show one key")
    sh.add_argument("key_id")
    u = ks.add_parser("update", help="change a key's limits")
    u.add_argument("key_id")
    _limit_flags(u)
    r = ks.add_parser("revoke", help="revoke a key (takes effect within the key cache window)")
    r.add_argument("key_id")
    for p in (c, ls, sh, u, r):
        p.set_defaults(func=keys_command)

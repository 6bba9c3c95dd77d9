"""``tiergate router train|export``: train a learned router from labeled outcomes, and
export the labels the gateway collected (feedback, cascade scores, judge verdicts) in
the training shape."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tiergate.config.catalog import CatalogError, load


def router_train(args: argparse.Namespace) -> int:
    from tiergate.routing.learned.data import DataError, read

    try:
        catalog = load(args.config)
        examples, digest = read(args.data)
    except (CatalogError, DataError) as e:
        print(f"tiergate router train: {e}", file=sys.stderr)
        return 2
    try:
        from tiergate.routing.learned import train
    except ImportError as e:
        print(f"tiergate router train needs the training extra ({e.name} is missing): "
              "pip install 'tiergate[train]'", file=sys.stderr)
        return 2
    try:
        man = train.train(examples, catalog, args.out, quality_target=args.quality_target, k=args.folds,
                          seed=args.seed, data_sha256=digest, sources=[str(p) for p in args.data], plot=args.plot)
    except (DataError, ValueError, RuntimeError) as e:
        print(f"tiergate router train: {e}", file=sys.stderr)
        return 2
    size = sum(f["bytes"] for f in man["files"].values())
    print(f"wrote {args.out} (artifact {man['id']}, {size / 1e6:.2f} MB, models {', '.join(man['models'])}, "
          f"scorer {'yes' if man['files'].get('scorer.json') else 'no'})")
    return 0


def _since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"tiergate router export: --since {text!r} is not an ISO date (YYYY-MM-DD)") from None
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()


def router_export(args: argparse.Namespace) -> int:
    from tiergate.routing.learned import labels
    from tiergate.settings import Settings
    from tiergate.stores import open_store

    settings = Settings()
    since = _since(args.since)

    async def go() -> int:
        store = open_store(settings)
        try:
            rows = await labels.export(store, since=since, tenant=args.tenant)
        finally:
            await store.aclose()
        labels.write_jsonl(args.out, rows)
        return len(rows)

    n = asyncio.run(go())
    print(f"wrote {n} labeled examples to {args.out}")
    return 0


def add_router_parser(sub: Any) -> None:
    r = sub.add_parser("router", help="learned routing: train an artifact, export collected labels")
    rsub = r.add_subparsers(dest="router_command", required=True)
    t = rsub.add_parser("train", help="train a router (and an answer scorer) from labeled JSON Lines")
    t.add_argument("data", type=Path, nargs="+", help="JSON Lines: messages/prompt, outcomes, answers (optional)")
    t.add_argument("--config", type=Path, help="the catalog (outcome keys must be its model names)")
    t.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    t.add_argument("--quality-target", type=float, default=0.95, help="the default target the table highlights")
    t.add_argument("--folds", type=int, default=5)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--plot", type=Path, help="draw the cost-quality curve to this PNG (needs matplotlib)")
    t.set_defaults(func=router_train)
    e = rsub.add_parser("export", help="write collected labels (feedback, cascade scores) as training data")
    e.add_argument("--since", help="only labels from this date on (YYYY-MM-DD)")
    e.add_argument("--tenant", help="only this tenant's labels")
    e.add_argument("--out", type=Path, required=True)
    e.set_defaults(func=router_export)

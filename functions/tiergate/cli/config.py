"""``tiergate config check FILE``: validate a catalog (schema, cross-references, local files)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tiergate.config.catalog import CatalogError, check_files, load


def config_check(args: argparse.Namespace) -> int:
    """Validate the catalog, and the router artifact ``routing.learned.path`` names (it must
    load, match its hashes and name only catalog models), as serving would at startup."""
    try:
        cat = load(args.file)
        learned = ""
        cfg = cat.routing.learned
        if cfg is not None and cfg.path is not None:
            from tiergate.routing.learned.serving import load_checked

            a = load_checked(cfg.path, cat)
            learned = (f", router artifact {a.id} ({', '.join(a.models)}; scorer {'yes' if a.scorer else 'no'}; "
                       f"target {cfg.quality_target:g})")
    except CatalogError as e:
        print(str(e), file=sys.stderr)
        return 1
    missing = check_files(cat)
    if missing:
        print(f"{args.file}: invalid catalog ({len(missing)} problem{'s' if len(missing) != 1 else ''}):\n"
              + "\n".join(f"  {args.file}: {m}" for m in missing), file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({len(cat.models)} deployments, tiers {cat.tiers()}, "
          f"{len(cat.aliases)} aliases, {len(cat.cascades)} cascade policies{learned})")
    return 0


def add_config_parser(sub: Any) -> None:
    c = sub.add_parser("config", help="catalog utilities")
    csub = c.add_subparsers(dest="config_command", required=True)
    chk = csub.add_parser("check", help="validate a catalog file: every problem at once, with file:line")
    chk.add_argument("file", type=Path, help="the catalog YAML to check")
    chk.set_defaults(func=config_check)

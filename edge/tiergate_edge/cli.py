"""``tiergate edge``: the device agent on localhost (added to the core CLI when installed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tiergate.settings import Settings, is_loopback
from tiergate_edge.settings import EdgeSettings


def _settings(args: argparse.Namespace) -> tuple[Settings, EdgeSettings]:
    core = {k: v for k, v in {"host": args.host, "port": args.port, "data_dir": args.data_dir}.items()
            if v is not None}
    settings = Settings(**core)
    edge: dict[str, Any] = {"data_dir": settings.data_dir}
    for flag, field in (("model", "model"), ("cloud", "cloud_url"), ("policy", "policy"), ("threads", "n_threads"),
                        ("ctx", "n_ctx_cap"), ("chat_format", "chat_format"), ("queue", "queue_path"),
                        ("cache", "cache"),
                        ("router", "router_artifact"), ("quality_target", "quality_target")):
        if getattr(args, flag) is not None:
            edge[field] = getattr(args, flag)
    return settings, EdgeSettings(**edge)


def run_edge(args: argparse.Namespace) -> int:
    from tiergate_edge import default_model
    from tiergate_edge.gguf_meta import NotGGUF, read_info

    try:
        settings, edge = _settings(args)
    except ValidationError as e:
        print(f"tiergate edge: invalid setting: {e}", file=sys.stderr)
        return 2
    if settings.master_key is None and not is_loopback(settings.host):
        print(f"tiergate edge: refusing to bind {settings.host} without TIERGATE_MASTER_KEY", file=sys.stderr)
        return 2
    try:
        # Resolve (and, first run, verify) the model before serving.
        path = default_model.resolve_model_path(edge.model, edge.models_dir, progress=True)
        info = read_info(path)
    except (NotGGUF, ValueError, OSError) as e:
        print(f"tiergate edge: cannot use model {edge.model!r}: {e}", file=sys.stderr)
        return 2
    from tiergate.config.catalog import CatalogError
    from tiergate_edge.agent import EdgeAgent, build_edge_app

    try:
        agent = EdgeAgent(settings, edge)
    except CatalogError as e:  # a bad router artifact
        print(f"tiergate edge: {e}", file=sys.stderr)
        return 2
    app = build_edge_app(agent)
    print(f"tiergate edge: local model {path} ({info.architecture}, trained context {info.context_length}, "
          f"using {agent.runtime.context_window(agent.local)}), {edge.n_threads} threads")
    print(f"  cloud: {edge.cloud_url or 'none (offline only)'}; policy {edge.policy}; queue {edge.resolved_queue_path}")
    print(f"  OpenAI base URL: http://{settings.host}:{settings.port}/v1", flush=True)
    import uvicorn

    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=False)
    return 0


def add_edge_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("edge", help="run the device agent: local model first, offload to a cloud gateway")
    p.add_argument("--model", help="a GGUF path, a name from `tiergate models list`, or bundled:smollm2-135m (default)")
    p.add_argument("--cloud", help="cloud gateway base URL (key from TIERGATE_CLOUD_KEY)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--policy", choices=["local-only", "prefer-local", "prefer-cloud"])
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    p.add_argument("--ctx", type=int, help="cap on the local context window (default 4096)")
    p.add_argument("--chat-format", help="llama.cpp chat format when the GGUF has no template")
    p.add_argument("--data-dir", type=Path, help="where the model, queue and usage outbox live")
    p.add_argument("--queue", type=Path, help="SQLite queue path (default: <data-dir>/edge-queue.sqlite3)")
    p.add_argument("--cache", choices=["off", "exact", "semantic"],
                   help="response cache on the device (default off; semantic needs tiergate[semantic])")
    p.add_argument("--router", type=Path, help="router artifact whose outcomes include 'local': decides offload")
    p.add_argument("--quality-target", type=float, help="offload when local is predicted below this (default 0.95)")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=run_edge)
    return p

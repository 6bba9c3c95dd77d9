"""Run a tiergate app under real uvicorn on a free loopback port, in a background thread.

``serve_app(app)`` is a context manager yielding the base URL; ``gateway_factory`` is a
fixture that builds an app from a catalog YAML string (with the upstream simulator's
address substituted for ``{sim}``) and serves it, so API tests talk to the gateway
through the official ``openai`` SDK over real HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from tests.support.procs import free_port, port_open, wait_for
from tiergate.cli.serve import local_plugins
from tiergate.compose import build_app
from tiergate.config import catalog as catalog_mod
from tiergate.settings import Settings


@contextmanager
def serve_app(app: FastAPI, *, port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started and port_open(port), timeout=20, what="gateway")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def gateway_factory(tmp_path: Path, sim: Any) -> Iterator[Callable[..., tuple[str, FastAPI]]]:
    """``make(catalog_yaml, **settings) -> (base_url, app)``; every server stops at teardown."""
    stack: list[Any] = []

    def make(catalog_yaml: str, *, with_plugins: bool = False, parts: dict[str, Any] | None = None,
             **settings: Any) -> tuple[str, FastAPI]:
        parts = parts or {}
        text = catalog_yaml.replace("{sim}", sim.openai_base).replace("{sim_root}", sim.url)
        cat = catalog_mod.parse(text, source="test")
        s = Settings(data_dir=tmp_path / "data", store="memory", **settings)
        app = build_app(s, cat, plugins=local_plugins(s) if with_plugins else (), **parts)
        cm = serve_app(app)
        url = cm.__enter__()
        stack.append(cm)
        return url, app

    yield make
    for cm in reversed(stack):
        cm.__exit__(None, None, None)

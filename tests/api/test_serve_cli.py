"""``tiergate serve`` as a person runs it: a subprocess, its terminal output, its port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.procs import free_port, spawn, stop, wait_for

CATALOG = """
models:
  - {{name: fast, model: openai/fast, adapter: openai-compatible, api_base: "{api}", tier: 1,
     input_cost_per_mtok: 0.1, output_cost_per_mtok: 0.2}}
"""


def _env(tmp: Path) -> dict[str, str]:
    return {"TIERGATE_ENVIRONMENT": "test", "PYTHONPATH": os.pathsep.join(
        p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}


def test_banner_access_log_and_a_used_port(sim, tmp_path: Path) -> None:
    cat = tmp_path / "c.yaml"
    cat.write_text(CATALOG.format(api=sim.openai_base))
    port = free_port()
    data = tmp_path / "data"
    args = [sys.executable, "-m", "tiergate.cli", "serve", "--config", str(cat), "--port", str(port),
            "--data-dir", str(data)]
    log = tmp_path / "serve.log"
    p = spawn(args, log=log, env=_env(tmp_path))
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200, timeout=30,
                 what="tiergate serve", proc=p)
        assert httpx.get(f"http://127.0.0.1:{port}/v2/chat", timeout=5).status_code == 404
        # A second instance on the same port: a one-line hint, no banner, exit 2.
        second = subprocess.run(args, capture_output=True, text=True, timeout=60, env={**os.environ, **_env(tmp_path)})
        assert second.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr and "--port" in second.stderr
        assert "OpenAI base URL" not in second.stdout
        wait_for(lambda: "/v2/chat" in log.read_text(), timeout=10, what="access log line")
        # A kept-alive connection idle for longer than the usual clients' pool expiry (httpx
        # and the official SDKs: 5 s) is still open: with the server's own 5 s, a client
        # reusing it as the server closed it lost its request (the crash bench's soak).
        with socket.create_connection(("127.0.0.1", port)) as c:
            get = f"GET /health HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()
            c.sendall(get)
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(6)
            c.sendall(get)
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        stop(p)
    out = log.read_text()
    assert f"data dir: {data}" in out and f"http://127.0.0.1:{port}/docs" in out
    assert '"GET /v2/chat HTTP/1.1" 404' in out     # the wrong path left a trace at the default level


def test_serve_help_explains_every_option() -> None:
    from tiergate.cli import parser

    text = parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for flag in ("--host", "--port", "--config", "--data-dir", "--log-level", "--no-access-log"):
        line = next(ln for ln in text.splitlines() if flag in ln)
        assert len(line.split(flag, 1)[1].strip()) > 0 or flag in text, flag
    assert "TIERGATE_PORT or 8080" in text and "TIERGATE_MASTER_KEY" in text


def test_the_heap_is_frozen_with_the_catalogs_adapters_already_built(tmp_path: Path) -> None:
    """``freeze_heap`` builds the native adapter (what the first request would import)
    before freezing, so its objects are out of the collector's generations."""
    import gc

    from tiergate.cli.serve import freeze_heap
    from tiergate.compose import build_app
    from tiergate.config.catalog import parse
    from tiergate.settings import Settings

    catalog = parse("models:\n  - {name: m, model: openai/m, adapter: openai-compatible, tier: 1, "
                    "api_base: 'http://127.0.0.1:1/v1'}\n", source="test")
    app = build_app(Settings(store="memory", data_dir=tmp_path), catalog)
    registry = app.state.services.registry
    assert "openai-compatible" not in registry.built()
    try:
        freeze_heap(app)
        assert "openai-compatible" in registry.built()
        provider = registry.get("openai-compatible")
        assert gc.get_freeze_count() > 0
        assert not any(o is provider for o in gc.get_objects())  # frozen: in no generation
    finally:
        gc.unfreeze()

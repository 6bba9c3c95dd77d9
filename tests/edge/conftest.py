"""Fixtures for the edge agent tests: the tiny GGUF, an in-process agent under uvicorn,
and (for offload tests) the core gateway as the cloud, in front of the upstream simulator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.edge.cloud import Cloud
from tests.support.procs import free_port
from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", seed=0)


@pytest.fixture(scope="session")
def tiny_gguf_alt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf-alt") / "tiny-alt.gguf", seed=1)


@dataclass
class RunningAgent:
    url: str
    agent: Any
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_app(app: Any, port: int | None = None) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serve ``app`` with uvicorn on a loopback port in a background thread (real HTTP)."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, loop="asyncio"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(400):
        if server.started:
            break
        if not t.is_alive():
            raise RuntimeError("agent server exited during start-up")
        threading.Event().wait(0.025)
    else:
        raise TimeoutError("agent server did not start")
    return f"http://127.0.0.1:{port}", server, t


@pytest.fixture
def edge_agent(tiny_gguf: Path, tmp_path: Path) -> Iterator[Callable[..., RunningAgent]]:
    """Factory: ``edge_agent(cloud_url=None, **edge_settings)`` -> a running agent."""
    from tiergate.settings import Settings
    from tiergate_edge.agent import EdgeAgent, build_edge_app
    from tiergate_edge.settings import EdgeSettings

    running: list[RunningAgent] = []

    def make(cloud_url: str | None = None, **kw: Any) -> RunningAgent:
        data = tmp_path / f"agent{len(running)}"
        opts: dict[str, Any] = {"model": str(tiny_gguf), "n_threads": 1, "data_dir": data, "cloud_url": cloud_url,
                                "probe_backoff_min_s": 0.2, "probe_backoff_max_s": 0.5, "probe_interval_s": 1.0,
                                "usage_sync_interval_s": 0.5}
        opts.update(kw)
        agent = EdgeAgent(Settings(data_dir=data, environment="test"), EdgeSettings(**opts))
        url, server, thread = start_app(build_edge_app(agent))
        r = RunningAgent(url, agent, server, thread)
        running.append(r)
        return r

    yield make
    for r in running:
        r.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def cloud(sim, tmp_path: Path) -> Iterator[Cloud]:
    """The real cloud gateway (``tiergate serve`` in a subprocess) in front of the simulator."""
    c = Cloud(tmp_path, sim.openai_base, free_port())
    c.start()
    yield c
    c.stop()

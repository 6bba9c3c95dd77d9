"""The real cloud gateway for offload tests: ``tiergate serve`` in a subprocess on a fixed
loopback port (so it can be stopped and started again), in front of the upstream simulator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from tests.support.procs import spawn, stop, wait_for

CLOUD_CATALOG = """
models:
  - {{name: sim-fast, model: openai/sim-fast, adapter: openai-compatible, api_base: "{api}", tier: 1,
     capabilities: [tools, json]}}
  - {{name: sim-balanced, model: openai/sim-balanced, adapter: openai-compatible, api_base: "{api}", tier: 2,
     capabilities: [tools, json, vision]}}
  - {{name: sim-premium, model: openai/sim-premium, adapter: openai-compatible, api_base: "{api}", tier: 3,
     capabilities: [tools, json]}}
  - {{name: sim-live, model: openai/sim-live, adapter: openai-compatible, api_base: "{api}", tier: 4,
     capabilities: [tools, json]}}
  - {{name: sim-embed, model: openai/sim-embed, adapter: openai-compatible, api_base: "{api}", tier: 1,
     capabilities: [embeddings], input_cost_per_mtok: 0.02}}
  - {{name: sim-claude, model: anthropic/sim-claude, adapter: litellm, api_base: "{root}", tier: 3,
     capabilities: [tools, json]}}
"""


class Cloud:
    def __init__(self, tmp: Path, sim_api: str, port: int) -> None:
        self.tmp, self.port = tmp, port
        self.url = f"http://127.0.0.1:{port}"
        self.catalog = tmp / "cloud-catalog.yaml"
        self.catalog.write_text(CLOUD_CATALOG.format(api=sim_api, root=sim_api.removesuffix("/v1")))
        self.proc = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {"TIERGATE_DATA_DIR": str(self.tmp / "cloud-data"), "TIERGATE_ENVIRONMENT": "test",
               # Keep the caller's PYTHONPATH (a worktree's functions/ and edge/) ahead of the install.
               "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), os.getcwd()) if p)}
        self.proc = spawn([sys.executable, "-m", "tiergate.cli", "serve", "--config", str(self.catalog),
                           "--port", str(self.port), "--host", "127.0.0.1"],
                          log=self.tmp / f"cloud-{self.starts}.log", env=env)
        wait_for(lambda: httpx.get(self.url + "/health", timeout=1).status_code == 200, timeout=30,
                 what="cloud gateway", proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

"""Gateway overhead: tiergate beside the LiteLLM proxy and direct calls, in one run.

Starts ``tiergate serve`` (one worker, native adapter, embedded stores) with a route for
model ``sim`` to the shared harness's upstream, then runs the shared anchor harness
(``../shared/bench/anchor_litellm.py``) with tiergate as the candidate. The harness
starts the upstream and the LiteLLM proxy itself and prints both side by side, with
ratios (req/s, added latency p50/p99, CPU per request and per stream, RSS).

    /tmp/perf/venv/bin/python bench/overhead/run.py            # full (~6 min)
    /tmp/perf/venv/bin/python bench/overhead/run.py --quick    # smoke (~1.5 min)
    python3 bench/overhead/run.py --doors-only                 # just the doors step (~1 min)

First the doors step (:mod:`doors`: each front door -- Anthropic Messages, Responses,
legacy completions -- beside the chat door on the same gateway and upstream, request by
request interleaved: added p50/p99 and time to first streamed content), then the harness.
Any other flag goes to the harness. The interpreter running this needs litellm[proxy]
(see ../shared/bench/README.md); tiergate runs under the project's own Python
(``TIERGATE_PYTHON``, default ``python3``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# ../shared/bench beside the repository (a git worktree may sit one level deeper).
HARNESS = next((p / "shared" / "bench" / "anchor_litellm.py" for p in (ROOT.parent, ROOT.parent.parent)
                if (p / "shared" / "bench" / "anchor_litellm.py").exists()),
               ROOT.parent / "shared" / "bench" / "anchor_litellm.py")
PORT = int(os.environ.get("TIERGATE_BENCH_PORT", "18080"))
KEY = "sk-bench-tiergate"


def doors_step(quick: bool) -> int:
    """Each front door on this gateway against the shared upstream, started here."""
    up = subprocess.Popen([sys.executable, str(HARNESS.parent / "upstream_sim.py"), "--port", "18001",
                           "--chunks", "20"], start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen("http://127.0.0.1:18001/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        n, streams = ("300", "40") if quick else ("1500", "200")
        return subprocess.call([sys.executable, str(HERE / "doors.py"), "--url", f"http://127.0.0.1:{PORT}",
                                "--key", KEY, "--n", n, "--streams", streams])
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=10)


def main() -> int:
    if not HARNESS.exists():
        print(f"shared harness not found at {HARNESS}", file=sys.stderr)
        return 2
    data = tempfile.mkdtemp(prefix="tiergate-bench-")
    env = {**os.environ, "TIERGATE_MASTER_KEY": KEY, "TIERGATE_DATA_DIR": data, "BENCH_UPSTREAM_KEY": "sk-sim",
           "TIERGATE_STORE": os.environ.get("TIERGATE_STORE", "sqlite"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    py = os.environ.get("TIERGATE_PYTHON", "python3")
    gw = subprocess.Popen([py, "-m", "tiergate.cli", "serve", "--config", str(HERE / "catalog.yaml"),
                           "--port", str(PORT)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=1)
                break
            except OSError:
                if gw.poll() is not None or time.monotonic() > deadline:
                    print("tiergate did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        flags = [f for f in sys.argv[1:] if f != "--doors-only"]
        rc = doors_step("--quick" in flags)
        if rc or "--doors-only" in sys.argv[1:]:
            return rc
        args = [sys.executable, str(HARNESS), "--candidate-url", f"http://127.0.0.1:{PORT}/v1",
                "--candidate-pid", str(gw.pid), "--candidate-name", "tiergate", "--candidate-key", KEY, *flags]
        return subprocess.call(args, cwd=str(HARNESS.parent))
    finally:
        os.killpg(gw.pid, signal.SIGTERM)
        gw.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())

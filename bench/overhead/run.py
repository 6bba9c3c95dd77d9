"""Gateway overhead: tiergate beside the LiteLLM proxy and direct calls, in one run.

Starts ``tiergate serve`` (one worker, native adapter, embedded stores) with a route for
model ``sim`` to the shared harness's upstream, then runs the shared anchor harness
(``../shared/bench/anchor_litellm.py``) with tiergate as the candidate. The harness
starts the upstream and the LiteLLM proxy itself and prints both side by side, with
ratios (req/s, added latency p50/p99, CPU per request and per stream, RSS).

    /tmp/perf/venv/bin/python bench/overhead/run.py            # full (~5 min)
    /tmp/perf/venv/bin/python bench/overhead/run.py --quick    # smoke (~1 min)

Any extra flag goes to the harness. The interpreter running this needs litellm[proxy]
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
HARNESS = ROOT.parent / "shared" / "bench" / "anchor_litellm.py"
PORT = int(os.environ.get("TIERGATE_BENCH_PORT", "18080"))
KEY = "sk-bench-tiergate"


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
        args = [sys.executable, str(HARNESS), "--candidate-url", f"http://127.0.0.1:{PORT}/v1",
                "--candidate-pid", str(gw.pid), "--candidate-name", "tiergate", "--candidate-key", KEY,
                *sys.argv[1:]]
        return subprocess.call(args, cwd=str(HARNESS.parent))
    finally:
        os.killpg(gw.pid, signal.SIGTERM)
        gw.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())

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

The cost of telemetry, side by side in one run (no LiteLLM needed: the reference is
tiergate itself with every telemetry sink off, ``TIERGATE_PROMETHEUS_METRICS=false``):

    python3 bench/overhead/run.py --telemetry prometheus --quick   # bare vs Prometheus series (the default)
    python3 bench/overhead/run.py --telemetry otel --quick         # bare vs Prometheus + OTel GenAI export

``otel`` also starts a loopback OTLP/HTTP receiver that accepts and drops every export, so
the candidate pays for building, batching and sending its spans and metrics for real. The
harness's ``vs`` row is then the telemetry's cost: req/s ratio, added-latency ratio, CPU
per request and per stream, RSS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: ``../shared`` beside the repository (``TIERGATE_BENCH_SHARED`` for a checkout elsewhere).
HARNESS = Path(os.environ.get("TIERGATE_BENCH_SHARED") or ROOT.parent / "shared") / "bench" / "anchor_litellm.py"
PORT = int(os.environ.get("TIERGATE_BENCH_PORT", "18080"))
KEY = "sk-bench-tiergate"


def start_tiergate(port: int, data: str, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "TIERGATE_MASTER_KEY": KEY, "TIERGATE_DATA_DIR": data, "BENCH_UPSTREAM_KEY": "sk-sim",
           "TIERGATE_STORE": os.environ.get("TIERGATE_STORE", "sqlite"), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           **extra_env}
    py = os.environ.get("TIERGATE_PYTHON", "python3")
    gw = subprocess.Popen([py, "-m", "tiergate.cli", "serve", "--config", str(HERE / "catalog.yaml"),
                           "--port", str(port)], env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return gw
        except OSError:
            if gw.poll() is not None or time.monotonic() > deadline:
                stop(gw)
                raise RuntimeError(f"tiergate did not start on port {port}") from None
            time.sleep(0.2)


def stop(gw: subprocess.Popen) -> None:
    if gw.poll() is None:
        os.killpg(gw.pid, signal.SIGTERM)
        gw.wait(timeout=10)


class _DropExports(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that reads and drops every export (200, empty body)."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def main() -> int:
    if not HARNESS.exists():
        print(f"shared harness not found at {HARNESS}", file=sys.stderr)
        return 2
    args = sys.argv[1:]
    telemetry = None
    if "--telemetry" in args:
        i = args.index("--telemetry")
        telemetry = args[i + 1] if i + 1 < len(args) else ""
        del args[i:i + 2]
        if telemetry not in ("prometheus", "otel"):
            print("--telemetry takes prometheus or otel", file=sys.stderr)
            return 2
    procs: list[subprocess.Popen] = []
    sink: ThreadingHTTPServer | None = None
    try:
        if telemetry is None:
            gw = start_tiergate(PORT, tempfile.mkdtemp(prefix="tiergate-bench-"), {})
            procs.append(gw)
            cmd = ["--candidate-url", f"http://127.0.0.1:{PORT}/v1", "--candidate-pid", str(gw.pid),
                   "--candidate-name", "tiergate", "--candidate-key", KEY]
        else:
            bare = start_tiergate(PORT, tempfile.mkdtemp(prefix="tiergate-bench-"),
                                  {"TIERGATE_PROMETHEUS_METRICS": "false"})
            procs.append(bare)
            extra = {}
            if telemetry == "otel":
                sink = ThreadingHTTPServer(("127.0.0.1", 0), _DropExports)
                threading.Thread(target=sink.serve_forever, daemon=True).start()
                extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
                         "TIERGATE_OTEL_METRIC_EXPORT_INTERVAL_S": "5"}
            cand = start_tiergate(PORT + 1, tempfile.mkdtemp(prefix="tiergate-bench-"), extra)
            procs.append(cand)
            name = "tg-prom" if telemetry == "prometheus" else "tg-otel"
            cmd = ["--gateway-url", f"http://127.0.0.1:{PORT}/v1", "--gateway-pid", str(bare.pid),
                   "--gateway-name", "tg-bare", "--api-key", KEY, "--skip-inproc",
                   "--candidate-url", f"http://127.0.0.1:{PORT + 1}/v1", "--candidate-pid", str(cand.pid),
                   "--candidate-name", name, "--candidate-key", KEY]
        return subprocess.call([sys.executable, str(HARNESS), *cmd, *args], cwd=str(HARNESS.parent))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        for gw in procs:
            stop(gw)
        if sink is not None:
            sink.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())

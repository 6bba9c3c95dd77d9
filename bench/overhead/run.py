"""Gateway overhead: tiergate beside the LiteLLM proxy and direct calls, in one run.

Starts ``tiergate serve`` (one worker, native adapter, embedded stores) with a route for
model ``sim`` to the shared harness's upstream, then runs the shared anchor harness
(``../shared/bench/anchor_litellm.py``) with tiergate as the candidate. The harness
starts the upstream and the LiteLLM proxy itself and prints both side by side, with
ratios (req/s, added latency p50/p99, CPU per request and per stream, RSS).

    /tmp/perf/venv/bin/python bench/overhead/run.py            # full (~8 min with Portkey)
    /tmp/perf/venv/bin/python bench/overhead/run.py --quick    # smoke (~1.5 min)
    /tmp/perf/venv/bin/python bench/overhead/run.py --rounds 4 # balanced: direct, LiteLLM, Portkey, tiergate
    python3 bench/overhead/run.py --doors-only                 # just the doors step (~1 min)
    python3 bench/overhead/run.py --no-doors                   # just the harness

First the doors step (:mod:`doors`: each front door -- Anthropic Messages, Responses,
legacy completions -- beside the chat door on the same gateway and upstream, request by
request interleaved: added p50/p99 and time to first streamed content), then the harness.
Portkey's open-source gateway is the second peer whenever it is installed as
../shared/bench/README.md says (``/tmp/peers``, or the folder in ``TIERGATE_BENCH_PORTKEY``):
the harness's ``--portkey DIR`` is passed for it, so the table has a ``vs portkey`` row
beside ``vs litellm``; ``--portkey DIR`` picks another install, ``--no-portkey`` leaves it
out. Any other flag goes to the harness. The interpreter running this needs litellm[proxy]
(see ../shared/bench/README.md); tiergate runs under the project's own Python
(``TIERGATE_PYTHON``, default ``python3``).

An optimisation's effect, side by side in one run: tiergate from another tree (an export of
the commit before it, say: ``git archive HEAD~1 functions edge | tar -x -C /tmp/base``) as the
reference beside this tree's tiergate as the candidate (no LiteLLM, no Portkey):

    python3 bench/overhead/run.py --ab /tmp/base --quick --rounds 4   # "tg-base" vs "tg-new"

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
# ../shared/bench beside the repository (a git worktree may sit one level deeper).
HARNESS = next((p / "shared" / "bench" / "anchor_litellm.py" for p in (ROOT.parent, ROOT.parent.parent)
                if (p / "shared" / "bench" / "anchor_litellm.py").exists()),
               ROOT.parent / "shared" / "bench" / "anchor_litellm.py")
PORT = int(os.environ.get("TIERGATE_BENCH_PORT", "18080"))
#: Where Portkey is installed when --portkey is not given (../shared/bench/README.md, Setup).
PORTKEY_DIR = Path(os.environ.get("TIERGATE_BENCH_PORTKEY", "/tmp/peers"))
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
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print(__doc__)
        print("Other flags go to the shared harness: python3 ../shared/bench/anchor_litellm.py --help")
        return 0
    if "--telemetry" in args:
        i = args.index("--telemetry")
        mode = args[i + 1] if i + 1 < len(args) else ""
        if mode not in ("prometheus", "otel"):
            print("--telemetry takes prometheus or otel", file=sys.stderr)
            return 2
        return telemetry_run(mode, args[:i] + args[i + 2:])
    if "--ab" in args:
        i = args.index("--ab")
        if i + 1 >= len(args) or not (Path(args[i + 1]) / "functions" / "tiergate").is_dir():
            print("--ab takes a tree with functions/tiergate (an export of another commit)", file=sys.stderr)
            return 2
        return ab_run(Path(args[i + 1]).resolve(), args[:i] + args[i + 2:])
    try:
        gw = start_tiergate(PORT, tempfile.mkdtemp(prefix="tiergate-bench-"), {})
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    try:
        flags = [f for f in args if f not in ("--doors-only", "--no-doors")]
        rc = 0 if "--no-doors" in args else doors_step("--quick" in flags)
        if rc or "--doors-only" in args:
            return rc
        cmd = [sys.executable, str(HARNESS), "--candidate-url", f"http://127.0.0.1:{PORT}/v1",
               "--candidate-pid", str(gw.pid), "--candidate-name", "tiergate", "--candidate-key", KEY,
               *portkey_flags(flags)]
        return subprocess.call(cmd, cwd=str(HARNESS.parent))
    finally:
        stop(gw)


def portkey_flags(flags: list[str]) -> list[str]:
    """The harness's flags with ``--portkey`` for an installed Portkey, unless given or refused."""
    if "--no-portkey" in flags:
        return [f for f in flags if f != "--no-portkey"]
    if "--portkey" in flags:
        return flags
    if (PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway").is_dir():
        return ["--portkey", str(PORTKEY_DIR), *flags]
    print(f"Portkey not found in {PORTKEY_DIR} (../shared/bench/README.md, Setup): no 'vs portkey' row",
          file=sys.stderr)
    return flags


def ab_run(base: Path, flags: list[str]) -> int:
    """tiergate from the tree ``base`` (the reference) beside this tree's (the candidate)."""
    procs: list[subprocess.Popen] = []
    here = os.pathsep.join(str(ROOT / d) for d in ("functions", "edge"))
    there = os.pathsep.join(str(base / d) for d in ("functions", "edge"))
    try:
        ref = start_tiergate(PORT, tempfile.mkdtemp(prefix="tiergate-bench-"), {"PYTHONPATH": there})
        procs.append(ref)
        cand = start_tiergate(PORT + 1, tempfile.mkdtemp(prefix="tiergate-bench-"), {"PYTHONPATH": here})
        procs.append(cand)
        cmd = [sys.executable, str(HARNESS), "--gateway-url", f"http://127.0.0.1:{PORT}/v1",
               "--gateway-pid", str(ref.pid), "--gateway-name", "tg-base", "--api-key", KEY, "--skip-inproc",
               "--candidate-url", f"http://127.0.0.1:{PORT + 1}/v1", "--candidate-pid", str(cand.pid),
               "--candidate-name", "tg-new", "--candidate-key", KEY, *flags]
        return subprocess.call(cmd, cwd=str(HARNESS.parent))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        for gw in procs:
            stop(gw)


def telemetry_run(mode: str, flags: list[str]) -> int:
    """tiergate with every sink off (the reference) beside tiergate with ``mode``'s sinks."""
    procs: list[subprocess.Popen] = []
    sink: ThreadingHTTPServer | None = None
    try:
        bare = start_tiergate(PORT, tempfile.mkdtemp(prefix="tiergate-bench-"), {"TIERGATE_PROMETHEUS_METRICS": "false"})
        procs.append(bare)
        extra: dict[str, str] = {}
        if mode == "otel":
            sink = ThreadingHTTPServer(("127.0.0.1", 0), _DropExports)
            threading.Thread(target=sink.serve_forever, daemon=True).start()
            extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
                     "TIERGATE_OTEL_METRIC_EXPORT_INTERVAL_S": "5"}
        cand = start_tiergate(PORT + 1, tempfile.mkdtemp(prefix="tiergate-bench-"), extra)
        procs.append(cand)
        cmd = [sys.executable, str(HARNESS), "--gateway-url", f"http://127.0.0.1:{PORT}/v1",
               "--gateway-pid", str(bare.pid), "--gateway-name", "tg-bare", "--api-key", KEY, "--skip-inproc",
               "--candidate-url", f"http://127.0.0.1:{PORT + 1}/v1", "--candidate-pid", str(cand.pid),
               "--candidate-name", "tg-prom" if mode == "prometheus" else "tg-otel", "--candidate-key", KEY, *flags]
        return subprocess.call(cmd, cwd=str(HARNESS.parent))
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

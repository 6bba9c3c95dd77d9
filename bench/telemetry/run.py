"""Telemetry's cost per settled request, in one process: the time of one
``telemetry.emit(record)`` (what the gateway calls once per request, on the request's
path) for no sink, the Prometheus sink, OpenTelemetry (GenAI span + histograms, exporting
over OTLP/HTTP to a loopback receiver that drops everything), and both behind the fan-out;
and the Prometheus sink in multiprocess mode (``tiergate serve --workers N``: counters in
memory-mapped files), timed in a child process, since prometheus_client picks its value
storage when it is imported.

    python3 bench/telemetry/run.py [-n 20000] [--rounds 5]

Prints median and p99 per emit (microseconds) per sink, interleaved rounds, and each
sink's median beside no sink; then the background cost of OpenTelemetry: the CPU time the
process spent per record turning the queue into spans and points and exporting them.
That CPU is off the request's path but not free: ``bench/overhead --telemetry otel``
shows it as whole-gateway CPU per request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))

from tiergate.observe.otel import OtelTelemetry  # noqa: E402
from tiergate.observe.prometheus import PrometheusMetrics  # noqa: E402
from tiergate.telemetry import FanoutTelemetry, NoopTelemetry  # noqa: E402

MODELS = [f"model-{i}" for i in range(8)]


class Drop(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def records(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append({"request_id": f"r{i}", "model": MODELS[i % 8], "tier": i % 4, "requested_model": "auto",
                    "upstream_model": MODELS[i % 8], "provider": "openai", "operation": "chat",
                    "prompt_tokens": 40 + i % 50, "completion_tokens": 100 + i % 80, "cost_usd": 1e-5 * (i % 7),
                    "latency_ms": 5.0 + i % 30, "ttft_ms": 2.0 if i % 5 == 0 else None, "attempts": 1 + (i % 20 == 0),
                    "fallback": False, "outcome": "ok" if i % 50 else "error:upstream_timeout", "cache_hit": False,
                    "task_type": "general", "budget_utilization_percent": None})
    return out


def time_emits(sink, recs: list[dict]) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for r in recs:
        t = clock()
        sink.emit(r)
        out.append((clock() - t) / 1000)
    return out


def multiprocess_child(n: int, rounds: int) -> int:
    """Run with PROMETHEUS_MULTIPROC_DIR set: print the Prometheus sink's emit times (JSON)."""
    prom = PrometheusMetrics(models=MODELS, deployments=MODELS)
    assert prom.multiprocess_dir is not None, "not in multiprocess mode"
    recs = records(n)
    time_emits(prom, recs[:2000])
    print(json.dumps([t for _ in range(rounds) for t in time_emits(prom, recs)]))
    return 0


def multiprocess_times(n: int, rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, __file__, "--multiprocess-child", "-n", str(n), "--rounds", str(rounds)],
                             env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": d}, capture_output=True, text=True,
                             check=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--multiprocess-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.multiprocess_child:
        return multiprocess_child(a.n, a.rounds)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Drop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    prom = PrometheusMetrics(models=MODELS, deployments=MODELS)
    # The emit loop is a burst far above any real rate: give the queue room for all of it and
    # keep the recording thread idle during the loop, so the emits time the request's path
    # alone; the background work is timed afterwards, in chunks the span processor takes.
    room = a.n * (a.rounds + 1)
    otel = OtelTelemetry(endpoint, export_interval_s=5, queue_size=room, record_interval_s=3600)
    sinks = {"none": NoopTelemetry(), "prometheus": prom, "otel": otel,
             "prometheus+otel": FanoutTelemetry([PrometheusMetrics(models=MODELS, deployments=MODELS),
                                                 OtelTelemetry(endpoint, export_interval_s=5, queue_size=room,
                                                               record_interval_s=3600)])}
    recs = records(a.n)
    for sink in sinks.values():  # warm: label children, instruments, first batch
        time_emits(sink, recs[:2000])
    got: dict[str, list[float]] = {k: [] for k in sinks}
    for rnd in range(a.rounds):
        names = list(sinks)
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            got[name] += time_emits(sinks[name], recs)
    # OpenTelemetry's background work per record: spans + histogram points + export, in CPU.
    bg = OtelTelemetry(endpoint, export_interval_s=5, queue_size=room, record_interval_s=3600)
    cpu, done = time.process_time(), 0
    for i in range(0, len(recs), 500):
        for r in recs[i:i + 500]:
            bg.emit(r)
        bg.flush()
        done += len(recs[i:i + 500])
    bg_us = (time.process_time() - cpu) * 1e6 / done
    bg.close()
    got["prometheus (multiproc)"] = multiprocess_times(a.n, a.rounds)
    base = statistics.median(got["none"])
    print(f"emit per settled request, {a.rounds} rounds x {a.n} records (microseconds)")
    prom_med = statistics.median(got["prometheus"])
    print(f"{'sink':<24}{'median':>10}{'p99':>10}{'median - none':>16}{'/ prometheus':>14}")
    for name, vals in got.items():
        vals.sort()
        p99 = vals[int(0.99 * (len(vals) - 1))]
        med = statistics.median(vals)
        print(f"{name:<24}{med:>10.2f}{p99:>10.2f}{med - base:>16.2f}{med / prom_med:>13.2f}x")
    print(f"otel background (span + points + OTLP/HTTP export, 500-record batches): {bg_us:.1f} us CPU per "
          f"record, {bg.dropped} dropped")
    server.shutdown()  # the burst sinks are not closed: draining 100k queued spans would only drop them
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

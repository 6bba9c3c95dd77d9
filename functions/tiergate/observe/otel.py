"""OpenTelemetry with the GenAI semantic conventions, exported over OTLP/HTTP (the only
module importing the OpenTelemetry SDK; imported only when an endpoint is configured).

Per settled request (the gateway's telemetry record) it records:

* a span ``chat <gen_ai.request.model>`` covering admission to settlement -- a child of the
  caller's span when the request carried a W3C ``traceparent`` (:mod:`tiergate.request.trace`) -- with
  ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
  ``error.type`` on failures, and ``tiergate.*`` (tier, cost, attempts, outcome, TTFT);
* the histograms ``gen_ai.client.token.usage`` (``gen_ai.token.type`` input/output),
  ``gen_ai.server.request.duration`` and, for streams, ``gen_ai.server.time_to_first_token``,
  with the bucket boundaries the conventions advise.

Off the request path: :meth:`OtelTelemetry.emit` only stamps the record with the time and
appends it to a bounded queue; a background thread turns queued records into spans
(start = settlement time - latency, end = settlement time: the span is built after the
fact, from the record) and histogram points, and the SDK's own threads export them (a
batch span processor, a periodic metric reader). Building a span costs tens of
microseconds of SDK work (``bench/telemetry``), which a request must not wait for. If the
queue is full (the exporter cannot keep up), the oldest records are dropped and counted.
Providers are this instance's own, never the process-global ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tiergate import __version__

log = logging.getLogger(__name__)

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
#: Parses the caller's ``traceparent``/``tracestate`` (checked at the door) into a parent context.
_PROPAGATOR = TraceContextTextMapPropagator()
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class OtelTelemetry:
    """A :class:`~tiergate.telemetry.Telemetry` sink exporting to ``endpoint`` (the OTLP/HTTP
    base URL: ``/v1/traces`` and ``/v1/metrics`` are appended, as the spec says)."""

    def __init__(self, endpoint: str, *, service_name: str = "tiergate", export_interval_s: float = 15.0,
                 span_exporter: Any = None, metric_reader: Any = None, queue_size: int = 10_000,
                 record_interval_s: float = 0.5) -> None:
        base = endpoint.rstrip("/")
        resource = Resource.create({"service.name": service_name, "service.version": __version__})
        self.tracer_provider = TracerProvider(resource=resource)
        # Smaller export batches than the SDK's 512: each batch is encoded holding the GIL.
        self.tracer_provider.add_span_processor(BatchSpanProcessor(
            span_exporter or OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=5),
            max_queue_size=8192, max_export_batch_size=128))
        reader = metric_reader or PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=5),
            export_interval_millis=export_interval_s * 1000)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        self.tracer = self.tracer_provider.get_tracer("tiergate", __version__)
        meter = self.meter_provider.get_meter("tiergate", __version__)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)
        self.duration = meter.create_histogram(
            "gen_ai.server.request.duration", unit="s", description="Generative AI server request duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self.ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token", unit="s", description="Time to generate first token",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS)
        self._queue: deque[tuple[int, Mapping[str, Any]]] = deque(maxlen=queue_size)
        self.dropped = 0
        self._interval_s = record_interval_s
        self._wake, self._stop = threading.Event(), threading.Event()
        self._drain_lock, self._start_lock = threading.Lock(), threading.Lock()
        # Started on the first record, so a process that forks after building the app
        # (uvicorn workers) runs the thread in the process that serves.
        self._thread = threading.Thread(target=self._run, name="tiergate-otel", daemon=True)
        self._started = False

    def emit(self, record: Mapping[str, Any]) -> None:
        """Queue the record (a deque append: no lock, no SDK call on the request's path)."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append((time.time_ns(), record))
        if not self._started:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if not self._started:
                self._thread.start()
                self._started = True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        with self._drain_lock:
            while self._queue:
                ended, record = self._queue.popleft()
                try:
                    self._record(record, ended)
                except Exception:  # one odd record must not stop the thread
                    log.exception("OpenTelemetry record failed")
                # Hand the GIL back after every record: the event loop's requests must not
                # wait behind a batch of SDK work (a p99 stall otherwise).
                time.sleep(0)

    def _record(self, record: Mapping[str, Any], now: int) -> None:
        latency_s = float(record.get("latency_ms") or 0.0) / 1000
        op = str(record.get("operation") or "chat")
        requested = str(record.get("requested_model") or record.get("model") or "unknown")
        outcome = str(record.get("outcome") or "ok")
        error = outcome.partition(":")[2] if outcome.startswith("error") else None
        common: dict[str, Any] = {"gen_ai.operation.name": op, "gen_ai.request.model": requested}
        if record.get("provider"):
            common["gen_ai.provider.name"] = record["provider"]
        if record.get("upstream_model"):
            common["gen_ai.response.model"] = record["upstream_model"]
        if error:
            common["error.type"] = error
        attrs = {**common, "tiergate.model": record.get("model") or "", "tiergate.outcome": outcome}
        for key in ("tier", "cost_usd", "attempts", "ttft_ms", "task_type", "cascade_policy", "request_id"):
            value = record.get(key)
            if value is not None:
                attrs[f"tiergate.{key}"] = value
        inp, out = record.get("prompt_tokens"), record.get("completion_tokens")
        if inp is not None:
            attrs["gen_ai.usage.input_tokens"] = inp
        if out is not None:
            attrs["gen_ai.usage.output_tokens"] = out
        # A caller's traceparent makes this span its child (same trace id); else a new trace.
        parent = (_PROPAGATOR.extract({"traceparent": record["traceparent"], "tracestate": record.get("tracestate", "")})
                  if record.get("traceparent") else None)
        span = self.tracer.start_span(f"{op} {requested}", context=parent, kind=SpanKind.SERVER,
                                      start_time=now - int(latency_s * 1e9), attributes=attrs)
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=now)
        self.duration.record(latency_s, common)
        if inp:
            self.token_usage.record(inp, {**common, "gen_ai.token.type": "input"})
        if out:
            self.token_usage.record(out, {**common, "gen_ai.token.type": "output"})
        if record.get("ttft_ms") is not None:
            self.ttft.record(float(record["ttft_ms"]) / 1000, common)

    def flush(self) -> None:
        """Record what is queued and export it now (a Lambda invocation's end, tests)."""
        self._drain()
        self.tracer_provider.force_flush(5000)
        self.meter_provider.force_flush(5000)

    def close(self) -> None:
        """Record and export what is queued, then stop every background thread (app shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._started:
            self._thread.join(timeout=5)
        self._drain()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

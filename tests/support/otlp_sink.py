"""A real OTLP/HTTP receiver on loopback: ``POST /v1/traces`` and ``/v1/metrics`` with
protobuf bodies, decoded with the OpenTelemetry protocol's own messages and kept in
memory, so tests see exactly what an OpenTelemetry Collector would receive."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class OtlpSink:
    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.url = ""

    def spans(self) -> list[Any]:
        return [s for req in self.traces for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]

    def metric_points(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for req in self.metrics:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        out.setdefault(m.name, []).extend(m.histogram.data_points)
        return out


def attrs(item: Any) -> dict[str, Any]:
    """An OTLP attribute list as a dict of plain values."""
    out = {}
    for kv in item.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


@contextmanager
def otlp_sink() -> Iterator[OtlpSink]:
    sink = OtlpSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path == "/v1/traces":
                req, resp = ExportTraceServiceRequest(), ExportTraceServiceResponse()
                req.ParseFromString(body)
                sink.traces.append(req)
            elif self.path == "/v1/metrics":
                req, resp = ExportMetricsServiceRequest(), ExportMetricsServiceResponse()
                req.ParseFromString(body)
                sink.metrics.append(req)
            else:
                self.send_response(404)
                self.end_headers()
                return
            out = resp.SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()

"""OpenTelemetry GenAI spans and metrics: exported over OTLP/HTTP to a real receiver when
an endpoint is set; nothing imported or exported when it is not."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest

from tests.support.otlp_sink import attrs, otlp_sink
from tests.support.traffic import known_traffic
from tiergate.observe.otel import OtelTelemetry
from tiergate.telemetry import FanoutTelemetry


@pytest.fixture(scope="module")
def exported(upstream, tmp_path_factory):
    upstream.reset()
    with otlp_sink() as sink:
        with known_traffic(tmp_path_factory.mktemp("otel"), upstream, otel_exporter_otlp_endpoint=sink.url,
                           otel_service_name="tiergate-test") as served:
            telemetry = served.app.state.services.telemetry
            assert isinstance(telemetry, FanoutTelemetry)
            otel = next(s for s in telemetry.sinks if isinstance(s, OtelTelemetry))
            sink.traced = _traced_requests(served)
            otel.flush()
            yield sink


TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def _traced_requests(served) -> dict[str, str]:
    """Requests carrying a W3C traceparent (valid, and malformed): request id by case."""
    secret = served.keys["acme"][1]
    out = {}
    cases = {"chat": ("/v1/chat/completions", {"model": "small", "messages": [{"role": "user", "content": "hi"}]},
                      f"00-{TRACE_ID}-{PARENT_ID}-01"),
             "stream": ("/v1/chat/completions", {"model": "small", "stream": True,
                                                 "messages": [{"role": "user", "content": "hi"}]},
                        f"00-{TRACE_ID}-{PARENT_ID}-01"),
             "messages": ("/v1/messages", {"model": "small", "max_tokens": 16,
                                           "messages": [{"role": "user", "content": "hi"}]},
                          f"00-{TRACE_ID}-{PARENT_ID}-01"),
             "malformed": ("/v1/chat/completions", {"model": "small", "messages": [{"role": "user", "content": "x"}]},
                           f"00-{TRACE_ID}-{'0' * 16}-01")}
    for name, (path, body, tp) in cases.items():
        r = httpx.post(served.url + path, json=body, timeout=30, headers={
            "authorization": f"Bearer {secret}", "traceparent": tp, "tracestate": "vendor=abc"})
        assert r.status_code == 200, r.text  # a bad traceparent never fails a request
        out[name] = r.headers["x-request-id"]
    return out


def test_span_joins_the_callers_traceparent(exported):
    """A request with a valid W3C traceparent gets a span in the caller's trace, child of the
    caller's span (chat, streamed chat, the Messages door); a malformed one starts a new trace."""
    by_id = {attrs(s).get("tiergate.request_id"): s for s in exported.spans()}
    for case in ("chat", "stream", "messages"):
        span = by_id[exported.traced[case]]
        assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_ID, case
        assert span.trace_state == "vendor=abc"
    bad = by_id[exported.traced["malformed"]]
    assert bad.trace_id.hex() != TRACE_ID and bad.parent_span_id == b""
    untraced = [s for s in exported.spans() if attrs(s).get("tiergate.request_id") not in exported.traced.values()]
    assert untraced and all(s.parent_span_id == b"" for s in untraced)


def test_one_genai_span_per_request(exported):
    spans = exported.spans()
    by_model = {}
    for s in spans:
        by_model.setdefault(attrs(s)["tiergate.model"], []).append(s)
    assert len(by_model["small"]) >= 4 and len(by_model["premium"]) == 3
    span = by_model["premium"][0]
    a = attrs(span)
    assert span.name == "chat premium"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "premium"
    assert a["gen_ai.response.model"] == "premium-3"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["tiergate.tier"] == 3 and a["tiergate.cost_usd"] > 0
    assert span.end_time_unix_nano > span.start_time_unix_nano
    streamed = [s for s in by_model["premium"] if "tiergate.ttft_ms" in attrs(s)]
    assert len(streamed) == 1
    failed = by_model["broken"][0]
    assert attrs(failed)["error.type"] == "upstream_server_error" and failed.status.code == 2  # ERROR
    auto = [s for s in spans if attrs(s)["gen_ai.request.model"] == "auto"]
    assert len(auto) == 1 and attrs(auto[0])["tiergate.task_type"] == "coding"


def test_genai_metrics(exported):
    points = exported.metric_points()
    assert {"gen_ai.client.token.usage", "gen_ai.server.request.duration",
            "gen_ai.server.time_to_first_token"} <= set(points)
    token_types = {attrs(p)["gen_ai.token.type"] for p in points["gen_ai.client.token.usage"]}
    assert token_types == {"input", "output"}
    ttft = points["gen_ai.server.time_to_first_token"]
    assert sum(p.count for p in ttft) == 3  # two streams of the known traffic, one traced
    models = {attrs(p)["gen_ai.request.model"] for p in points["gen_ai.server.request.duration"]}
    assert {"small", "fast", "premium", "auto", "cascade"} <= models
    resource = attrs(exported.metrics[0].resource_metrics[0].resource)
    assert resource["service.name"] == "tiergate-test"


def test_without_an_endpoint_nothing_is_imported():
    code = textwrap.dedent("""
        import sys
        from tiergate.compose import build_services
        from tiergate.settings import Settings
        import tempfile
        s = build_services(Settings(store="memory", data_dir=tempfile.mkdtemp()))
        assert not any(m.startswith("opentelemetry.sdk") for m in sys.modules), "SDK imported"
        from tiergate.observe.prometheus import PrometheusMetrics
        assert isinstance(s.telemetry, PrometheusMetrics), type(s.telemetry)
        print("ok")
    """)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

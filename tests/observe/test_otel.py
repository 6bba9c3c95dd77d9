"""OpenTelemetry GenAI spans and metrics: exported over OTLP/HTTP to a real receiver when
an endpoint is set; nothing imported or exported when it is not."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
            otel.flush()
            yield sink


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
    assert sum(p.count for p in ttft) == 2  # two streams
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

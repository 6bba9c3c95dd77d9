"""tiergate.aws (secrets via Powertools Parameters on moto; Step Functions result decoding)
and tiergate.telemetry (Powertools EMF/JSON output, no prompt text)."""

from __future__ import annotations

import json

import pytest

from tiergate import errors
from tiergate.aws.clients import client
from tiergate.aws.secrets import SecretsLookup
from tiergate.aws.step_functions import decode_execution
from tiergate.aws.telemetry import PowertoolsTelemetry
from tiergate.telemetry import NoopTelemetry, Telemetry


def test_secrets_lookup_reads_one_json_secret_with_caching(moto_server, aws_env):
    sm = client("secretsmanager", endpoint_url=moto_server, region="us-east-1")
    name = "tiergate-test/provider-keys"
    sm.create_secret(Name=name, SecretString=json.dumps({"master_key": "mk-1", "OPENAI_API_KEY": "sk-a"}))
    cached = SecretsLookup(name, max_age_s=300, secrets_client=sm)
    assert cached.master_key() == "mk-1"
    assert cached.provider_key("OPENAI_API_KEY") == "sk-a" and cached("ANTHROPIC_API_KEY") is None
    sm.put_secret_value(SecretId=name, SecretString=json.dumps({"master_key": "mk-2", "OPENAI_API_KEY": "sk-b"}))
    assert cached.master_key() == "mk-1"  # within max_age: no new call
    fresh = SecretsLookup(name, max_age_s=0, secrets_client=sm)
    assert fresh.master_key() == "mk-2" and fresh("OPENAI_API_KEY") == "sk-b"


def test_secrets_lookup_missing_or_malformed_secret_is_a_gateway_error(moto_server, aws_env):
    sm = client("secretsmanager", endpoint_url=moto_server, region="us-east-1")
    with pytest.raises(errors.ServiceUnavailable):
        SecretsLookup("does-not-exist", secrets_client=sm).values()
    sm.create_secret(Name="not-json", SecretString="plain text")
    with pytest.raises(errors.ServiceUnavailable):
        SecretsLookup("not-json", secrets_client=sm).master_key()


def test_decode_execution_maps_error_names_to_gateway_errors():
    assert decode_execution({"status": "SUCCEEDED", "output": '{"answer": 1}'}) == {"answer": 1}
    cause = json.dumps({"errorMessage": "provider down", "errorType": "UpstreamUnavailable"})
    with pytest.raises(errors.UpstreamUnavailable, match="provider down"):
        decode_execution({"status": "FAILED", "error": "UpstreamUnavailable", "cause": cause})
    with pytest.raises(errors.BudgetExceeded):
        decode_execution({"status": "FAILED", "error": "BudgetExceeded", "cause": "over"})
    with pytest.raises(errors.DeadlineExceeded):
        decode_execution({"status": "TIMED_OUT"})
    with pytest.raises(errors.UpstreamError, match="States.Runtime"):
        decode_execution({"status": "FAILED", "error": "States.Runtime", "cause": "bad path"})


def test_powertools_telemetry_emits_emf_per_tier_and_model_without_prompts(capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Tiergate/test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tiergate")
    tel = PowertoolsTelemetry()
    assert isinstance(tel, Telemetry) and isinstance(NoopTelemetry(), Telemetry)
    tel.emit({"model": "gpt-4o-mini", "tier": 1, "latency_ms": 120.5, "prompt_tokens": 10,
              "completion_tokens": 5, "cost_usd": 0.0004, "cache_hit": False, "outcome": "ok",
              "budget_utilization_percent": 81.0, "messages": [{"role": "user", "content": "SECRET PROMPT"}]})
    out = capsys.readouterr().out
    assert "SECRET PROMPT" not in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    emf = [line for line in lines if "_aws" in line]
    dims = [tuple(sorted(d for d in line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0])) for line in emf]
    assert ("service", "tier") in dims and ("model", "service") in dims and ("service",) in dims
    def value(line, name):
        v = line[name]
        return v[0] if isinstance(v, list) and len(v) == 1 else v

    by_tier = next(line for line in emf if line.get("tier") == "1")
    assert value(by_tier, "CostUsd") == 0.0004 and value(by_tier, "Requests") == 1.0
    assert value(by_tier, "Errors") == 0.0 and value(by_tier, "LatencyMs") == 120.5
    assert by_tier["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Tiergate/test"
    budget = next(line for line in emf if "BudgetUtilizationPercent" in line)
    assert value(budget, "BudgetUtilizationPercent") == 81.0
    logged = next(line for line in lines if line.get("message") == "request")
    assert logged["tiergate"]["model"] == "gpt-4o-mini" and "messages" not in logged["tiergate"]


def test_metric_values_count_the_gateways_error_outcomes():
    from tiergate.telemetry import METRIC_ERRORS, metric_values

    assert {n: v for n, _, v in metric_values({"outcome": "error:upstream_timeout"})}[METRIC_ERRORS] == 1.0
    assert {n: v for n, _, v in metric_values({"outcome": "ok"})}[METRIC_ERRORS] == 0.0

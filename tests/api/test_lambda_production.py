"""The Lambda handler as deployed: production settings, the master key and provider keys
from one Secrets Manager secret, budgets and usage on DynamoDB (moto in server mode)."""

from __future__ import annotations

import importlib
import json
import sys

import boto3
import pytest

from tests.api.test_lambda import AUTH, CHAT, Ctx, close_app, rest_v1

CATALOG = """
models:
  - {name: fast, model: openai/prod-m, adapter: openai-compatible, tier: 1, api_base: "%s",
     api_key_secret: SIM_PROVIDER_KEY, input_cost_per_mtok: 1, output_cost_per_mtok: 2}
budgets:
  global: {monthly_usd: 100}
"""


@pytest.fixture
def prod_handler(sim, moto_server, aws_env, tmp_path, monkeypatch):
    name = f"tiergate-test/provider-keys-{tmp_path.name}"
    sm = boto3.client("secretsmanager", endpoint_url=moto_server, region_name="us-east-1")
    sm.create_secret(Name=name, SecretString=json.dumps({"master_key": "sk-lambda",
                                                         "SIM_PROVIDER_KEY": "sk-from-secret"}))
    cfg = tmp_path / "catalog.yaml"
    cfg.write_text(CATALOG % sim.openai_base)
    prefix = f"t{tmp_path.name[-8:]}".replace("_", "")
    env = {"TIERGATE_ENVIRONMENT": "production", "TIERGATE_PROVIDER_KEYS_SECRET": name,
           "TIERGATE_CONFIG": str(cfg), "TIERGATE_STORE": "dynamodb", "TIERGATE_DYNAMODB_ENDPOINT_URL": moto_server,
           "AWS_ENDPOINT_URL": moto_server, "TIERGATE_DATA_DIR": str(tmp_path / "data"),
           "AWS_LAMBDA_FUNCTION_NAME": "tiergate-test-api", "POWERTOOLS_METRICS_NAMESPACE": "Tiergate/test",
           "POWERTOOLS_SERVICE_NAME": "tiergate-lambda-test"}  # its own logger: Powertools keeps one per service
    for t in ("keys", "budgets", "ratelimits", "usage", "idempotency", "responses"):
        env[f"TIERGATE_TABLE_{t.upper()}"] = f"{prefix}-{t}"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("TIERGATE_MASTER_KEY", raising=False)
    sys.modules.pop("tiergate.handlers.api", None)
    mod = importlib.import_module("tiergate.handlers.api")
    yield mod.handler, prefix
    close_app(mod.app)
    sys.modules.pop("tiergate.handlers.api", None)


def test_secrets_and_dynamodb_in_production(prod_handler, sim, moto_server, capsys):
    handler, prefix = prod_handler
    out = handler(rest_v1("POST", "/v1/chat/completions", CHAT, AUTH), Ctx())
    assert out["statusCode"] == 200, out["body"]
    # EMF on stdout: what the dashboard and the budget alarm read.
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for e in emf for d in e["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Requests", "LatencyMs", "CostUsd", "BudgetUtilizationPercent"} <= names
    assert any(e.get("tier") == "1" or e.get("model") == "fast" for e in emf)
    (req,) = sim.requests(model="prod-m")
    assert req["headers"]["authorization"] == "Bearer sk-from-secret"
    wrong = handler(rest_v1("POST", "/v1/chat/completions", CHAT, {**AUTH, "authorization": "Bearer nope"}), Ctx())
    assert wrong["statusCode"] == 401
    # The usage record is in DynamoDB when the response comes back.
    ddb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    items = ddb.scan(TableName=f"{prefix}-usage")["Items"]
    assert [i["model"]["S"] for i in items if "model" in i] == ["fast"]

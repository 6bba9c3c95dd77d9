"""Template assertions on every stack (dev and prod stages, one synth each per session).

Synthesis runs the cdk-nag AwsSolutions plugin: the ``dev``/``prod`` fixtures would raise on
any unacknowledged finding, and ``test_nag_rejects_an_unacknowledged_finding`` proves the
plugin really fails a synth.
"""

from __future__ import annotations

import json

import pytest

TABLES = ("keys", "budgets", "ratelimits", "usage", "idempotency", "responses", "cache")


def resources(template, type_: str) -> dict:
    return template.find_resources(type_)


def table_by_name(template, stage: str) -> dict[str, dict]:
    out = {}
    for res in resources(template, "AWS::DynamoDB::Table").values():
        out[res["Properties"]["TableName"].removeprefix(f"tiergate-{stage}-")] = res
    return out


def test_tables_schema_ttl_billing_and_pitr(dev):
    tables = table_by_name(dev.data, "dev")
    assert sorted(tables) == sorted(TABLES)
    for name, res in tables.items():
        p = res["Properties"]
        if name == "cache":  # entries by key alone (tiergate/cache/dynamodb.py)
            assert p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
        else:
            assert p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                      {"AttributeName": "sk", "KeyType": "RANGE"}]
        assert p["BillingMode"] == "PAY_PER_REQUEST"
        assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
        pitr = p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        assert pitr is (name in ("keys", "budgets")), name
        assert res["DeletionPolicy"] == "Delete" and not p.get("DeletionProtectionEnabled")
    gsi = tables["usage"]["Properties"]["GlobalSecondaryIndexes"]
    assert gsi[0]["IndexName"] == "by_tenant"
    assert gsi[0]["KeySchema"] == [{"AttributeName": "tenant", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}]


def test_prod_tables_are_retained_and_protected(prod):
    for res in table_by_name(prod.data, "prod").values():
        assert res["DeletionPolicy"] == "Retain"
        assert res["Properties"]["DeletionProtectionEnabled"] is True


def test_functions_arm64_python312_snapstart_behind_live_alias(dev):
    functions = resources(dev.gateway, "AWS::Lambda::Function")
    handlers = {f["Properties"]["Handler"] for f in functions.values()}
    assert handlers == {"tiergate.handlers.api.handler", "tiergate.handlers.cascade.handler", "run.sh"}
    for fn in functions.values():
        p = fn["Properties"]
        assert p["Architectures"] == ["arm64"]
        assert p["Runtime"] == "python3.12"
        assert p["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        assert p["TracingConfig"] == {"Mode": "Active"}
    assert len(resources(dev.gateway, "AWS::Lambda::Version")) == 3
    aliases = resources(dev.gateway, "AWS::Lambda::Alias")
    assert len(aliases) == 3 and {a["Properties"]["Name"] for a in aliases.values()} == {"live"}
    for alias in aliases.values():
        assert "Fn::GetAtt" in alias["Properties"]["FunctionVersion"]  # a published version


def _env(template, handler: str) -> dict:
    for fn in resources(template, "AWS::Lambda::Function").values():
        if fn["Properties"]["Handler"] == handler:
            return fn["Properties"]["Environment"]["Variables"]
    raise AssertionError(handler)


def test_environment_wiring(dev):
    api = _env(dev.gateway, "tiergate.handlers.api.handler")
    assert api["TIERGATE_ENVIRONMENT"] == "production"
    assert api["TIERGATE_STORE"] == "dynamodb"
    for name in TABLES:
        assert api[f"TIERGATE_TABLE_{name.upper()}"] == f"tiergate-dev-{name}"
    assert api["TIERGATE_PROVIDER_KEYS_SECRET"] == "tiergate-dev/provider-keys"
    assert api["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert api["POWERTOOLS_SERVICE_NAME"] == "tiergate"
    assert api["POWERTOOLS_METRICS_NAMESPACE"] == "Tiergate/dev"
    sm_ids = list(resources(dev.gateway, "AWS::StepFunctions::StateMachine"))
    assert api["TIERGATE_CASCADE_STATE_MACHINE_ARN"] == {"Ref": sm_ids[0]}
    stream = _env(dev.gateway, "run.sh")
    assert stream["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert stream["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert stream["PORT"] == stream["AWS_LWA_PORT"] == "8000"
    assert stream["TIERGATE_CASCADE_STATE_MACHINE_ARN"] == {"Ref": sm_ids[0]}
    cascade = _env(dev.gateway, "tiergate.handlers.cascade.handler")
    assert "TIERGATE_CASCADE_STATE_MACHINE_ARN" not in cascade
    # Nothing secret in any environment: no key material, only the secret's name.
    for env in (api, stream, cascade):
        assert not [k for k in env if "MASTER_KEY" in k or k.endswith("_API_KEY")]


def test_secret_generates_master_key_and_template_holds_no_secret(dev):
    secret = next(iter(resources(dev.gateway, "AWS::SecretsManager::Secret").values()))
    gen = secret["Properties"]["GenerateSecretString"]
    assert gen["GenerateStringKey"] == "master_key" and json.loads(gen["SecretStringTemplate"]) == {}
    assert "SecretString" not in secret["Properties"]


def _statements(template) -> list[dict]:
    out = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_iam_least_privilege_on_data_tables(dev):
    data_statements = [s for s in _statements(dev.gateway) if ":dynamodb:" in json.dumps(s["Resource"])]
    # api + stream functions, and the cascade step (it reserves and settles each step's budget)
    assert len(data_statements) == 3
    for s in data_statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions), actions
        assert "dynamodb:Scan" not in actions and "dynamodb:DeleteTable" not in actions
        assert not [r for r in s["Resource"] if "*" in json.dumps(r)], s["Resource"]
        assert all(f"table/tiergate-dev-{t}" in json.dumps(s["Resource"]) for t in TABLES)
    for s in _statements(dev.gateway):
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert "*" not in actions and not [a for a in actions if a.endswith(":*")], s


def test_api_functions_start_the_cascade_synchronously(dev):
    starters = [s for s in _statements(dev.gateway) if s["Action"] == "states:StartSyncExecution"]
    assert len(starters) == 2
    invoke = [s for s in _statements(dev.gateway) if s["Action"] == "lambda:InvokeFunction"]
    assert len(invoke) == 1 and ":live" in json.dumps(invoke[0]["Resource"])


def test_state_machine_is_express_logged_without_payloads_and_traced(dev):
    sm = next(iter(resources(dev.gateway, "AWS::StepFunctions::StateMachine").values()))["Properties"]
    assert sm["StateMachineType"] == "EXPRESS"
    assert sm["LoggingConfiguration"]["Level"] == "ALL"
    assert sm["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert sm["TracingConfiguration"] == {"Enabled": True}
    assert "CascadeStepArn" in sm["DefinitionSubstitutions"]
    assert "${CascadeStepArn}" in json.dumps(sm["DefinitionString"])


def _resource_paths(template) -> dict[str, str]:
    """Logical id of each API Gateway resource -> its full path."""
    res = resources(template, "AWS::ApiGateway::Resource")

    def path(lid: str) -> str:
        p = res[lid]["Properties"]
        parent = p["ParentId"]
        prefix = path(parent["Ref"]) if isinstance(parent, dict) and "Ref" in parent else ""
        return f"{prefix}/{p['PathPart']}"
    return {lid: path(lid) for lid in res}


def test_api_routes_streaming_and_buffered(dev):
    methods = resources(dev.gateway, "AWS::ApiGateway::Method")
    paths = _resource_paths(dev.gateway)
    streaming = [m for m in methods.values() if m["Properties"]["Integration"].get("ResponseTransferMode") == "STREAM"]
    # Every door that can stream: chat, legacy completions, Anthropic Messages, Responses.
    assert sorted(paths[m["Properties"]["ResourceId"]["Ref"]] for m in streaming) == [
        "/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses"]
    for m in streaming:
        assert m["Properties"]["HttpMethod"] == "POST"
        uri = json.dumps(m["Properties"]["Integration"]["Uri"])
        assert "response-streaming-invocations" in uri and "2021-11-15" in uri and ":live" in uri
    buffered = [m for m in methods.values() if m not in streaming]
    # /, /{proxy+}, /v1, /v1/{proxy+}, and below each streaming door its own {proxy+}
    # (count_tokens, GET/DELETE /v1/responses/{id}) -- a static resource shadows /v1/{proxy+}.
    below = sorted(paths[m["Properties"]["ResourceId"]["Ref"]] for m in buffered
                   if isinstance(m["Properties"]["ResourceId"], dict) and "Ref" in m["Properties"]["ResourceId"])
    assert {"/v1/messages/{proxy+}", "/v1/responses/{proxy+}", "/v1/{proxy+}"} <= set(below)
    assert len(buffered) == 11  # ... and /dashboard, /dashboard/{proxy+}, /metrics
    for m in buffered:
        uri = json.dumps(m["Properties"]["Integration"]["Uri"])
        assert "/invocations" in uri and "response-streaming" not in uri and ":live" in uri
    layers = json.dumps([f["Properties"].get("Layers") for f in resources(dev.gateway, "AWS::Lambda::Function").values()])
    assert "753240598075:layer:LambdaAdapterLayerArm64:" in layers


def test_dashboard_and_metrics_are_routed_to_the_buffered_function(dev):
    parts = {rid: r["Properties"] for rid, r in resources(dev.gateway, "AWS::ApiGateway::Resource").items()}
    by_path = {}
    for rid, props in parts.items():
        parent = props["ParentId"]
        prefix = "" if "Fn::GetAtt" in parent else by_path.get(parent.get("Ref"), "?")
        by_path[rid] = f"{prefix}/{props['PathPart']}"
    # Resolve children whose parent appeared later in the mapping.
    for _ in range(3):
        for rid, props in parts.items():
            ref = props["ParentId"].get("Ref")
            if ref in by_path:
                by_path[rid] = f"{by_path[ref]}/{props['PathPart']}"
    want = {"/dashboard": {"GET"}, "/dashboard/{proxy+}": {"ANY"}, "/metrics": {"GET"}}
    methods = resources(dev.gateway, "AWS::ApiGateway::Method").values()
    for path, verbs in want.items():
        [rid] = [r for r, p in by_path.items() if p == path]
        found = [m["Properties"] for m in methods if m["Properties"]["ResourceId"] == {"Ref": rid}]
        assert {m["HttpMethod"] for m in found} == verbs, path
        for m in found:
            uri = json.dumps(m["Integration"]["Uri"])
            assert "/invocations" in uri and "response-streaming" not in uri and ":live" in uri
            assert m["AuthorizationType"] == "NONE"  # the gateway's own keys and session cookie


def test_streaming_off_routes_everything_through_mangum(tmp_path, stub_layer):
    from aws_cdk.assertions import Template

    from infra.app import create_app
    from infra.constructs.cascade import STEP_ARN_PLACEHOLDER, fallback_definition

    app, _, gateway = create_app({"tiergate:layer_dir": str(stub_layer), "tiergate:streaming": "false"},
                                 definition=fallback_definition(STEP_ARN_PLACEHOLDER), outdir=str(tmp_path), nag=False)
    t = Template.from_stack(gateway)
    t.resource_count_is("AWS::Lambda::Function", 2)
    assert "STREAM" not in json.dumps(t.find_resources("AWS::ApiGateway::Method"))


def test_stage_throttling_access_logs_and_no_body_logging(dev):
    stage = next(iter(resources(dev.gateway, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["AccessLogSetting"]["DestinationArn"]
    assert "$context.status" in stage["AccessLogSetting"]["Format"]
    (settings,) = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 50 and settings["ThrottlingBurstLimit"] == 100
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    assert stage["TracingEnabled"] is True


def test_dashboard_and_alarms(dev):
    alarms = resources(dev.gateway, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 3
    text = json.dumps(alarms)
    assert "5XXError" in text and "BudgetUtilizationPercent" in text
    budget = [a for a in alarms.values() if "BudgetUtilizationPercent" in json.dumps(a)][0]["Properties"]
    assert budget["Threshold"] == 80 and "Tiergate/dev" in json.dumps(budget)
    p99 = [a for a in alarms.values() if '"p99"' in json.dumps(a) and "Latency" in json.dumps(a)]
    assert len(p99) == 1
    body = json.dumps(next(iter(resources(dev.gateway, "AWS::CloudWatch::Dashboard").values())))
    for needle in ("Requests", "p50", "p99", "Cost per tier", "CostUsd", "Errors", "Budget utilization"):
        assert needle in body, needle


def test_nag_rejects_an_unacknowledged_finding(tmp_path):
    import aws_cdk as cdk
    from aws_cdk import aws_dynamodb as ddb
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Bare")
    ddb.Table(stack, "T", partition_key=ddb.Attribute(name="pk", type=ddb.AttributeType.STRING))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()


def test_synth_reports_no_unacknowledged_findings(dev):
    report = dev.outdir / "validation-report.json"
    if report.exists():  # written only when a plugin reports something
        data = json.loads(report.read_text())
        for plugin in data["pluginReports"]:
            assert plugin["conclusion"] == "success", plugin
    assert (dev.outdir / "manifest.json").exists()


def test_stage_config_is_typed_and_strict():
    from pydantic import ValidationError

    from infra.config import load_stage

    stage = load_stage({"stage": "prod", "tiergate:stages": {"prod": {"memory_mb": 2048, "production": True}},
                        "tiergate:reserved_concurrency": "10"})
    assert (stage.name, stage.memory_mb, stage.production, stage.reserved_concurrency) == ("prod", 2048, True, 10)
    assert stage.architecture == "arm64"
    with pytest.raises(ValidationError):
        load_stage({"tiergate:stages": {"dev": {"memroy_mb": 1}}})
    with pytest.raises(ValidationError):
        load_stage({"tiergate:log_retention_days": "13"})
    with pytest.raises(ValidationError):
        load_stage({"tiergate:architecture": "mips"})


def test_gateway_outputs(dev):
    outputs = dev.gateway.to_json()["Outputs"]
    assert {"ApiUrl", "OpenAIBaseUrl", "ProviderKeysSecretName", "CascadeStateMachineArn", "DashboardName"} <= set(outputs)
    assert "v1" in json.dumps(outputs["OpenAIBaseUrl"]["Value"])


def test_alarm_email_adds_an_ssl_only_topic_that_every_alarm_notifies(tmp_path, stub_layer):
    from aws_cdk.assertions import Match, Template

    from infra.app import create_app
    from tests.infra.conftest import cascade_asl

    app, _, gateway = create_app({"stage": "dev", "tiergate:layer_dir": str(stub_layer),
                                  "tiergate:alarm_email": "ops@example.com"},
                                 definition=cascade_asl(), outdir=str(tmp_path))
    app.synth()  # cdk-nag runs here: the topic's findings are acknowledged with reasons
    t = Template.from_json(json.loads((tmp_path / f"{gateway.stack_name}.template.json").read_text()))
    t.resource_count_is("AWS::SNS::Topic", 1)
    t.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
    t.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})
    alarms = t.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == 3 and all(a["Properties"].get("AlarmActions") for a in alarms.values())


def test_no_alarm_email_no_topic(dev):
    dev.gateway.resource_count_is("AWS::SNS::Topic", 0)

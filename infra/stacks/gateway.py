"""The gateway stack: secret, layers, functions, cascade state machine, REST API and
observability, plus all the wiring between them (grants and environment variables).

Functions (all python3.12, SnapStart, alias ``live``; code asset = functions/):
- ``api``: buffered, ``tiergate.handlers.api.handler`` (FastAPI through Mangum)
- ``stream``: ``run.sh`` -> uvicorn ``tiergate.handlers.asgi:app`` behind the Lambda Web Adapter,
  serving the streaming routes with API Gateway response streaming (``stage.streaming``)
- ``cascade``: ``tiergate.handlers.cascade.handler``, the state machine's task
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Environment, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as sns_subs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.api import GatewayApi
from infra.constructs.cascade import CascadeStateMachine
from infra.constructs.functions import GatewayFunction
from infra.constructs.layers import DependenciesLayer, web_adapter_layer
from infra.constructs.observability import GatewayObservability
from infra.constructs.tables import SETTINGS_KEYS, TABLE_INDEXES, table_name
from infra.nag import acknowledge_gateway

API_HANDLER = "tiergate.handlers.api.handler"
CASCADE_HANDLER = "tiergate.handlers.cascade.handler"
STREAM_HANDLER = "run.sh"
POWERTOOLS_SERVICE = "tiergate"
STREAM_PORT = "8000"
HEALTH_PATH = "/health"
#: What the stores do to records: point reads/writes (every write conditional), queries and
#: transactions (authorized per item action). No Scan, no table administration, no wildcards.
DATA_ACTIONS = (
    "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem",
    "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable",
)


#: Where Lambda extracts the code asset.
TASK_ROOT = "/var/task"
#: The issue's budget for a router artifact (the function asset must not grow past it).
MAX_ARTIFACT_BYTES = 20 * 1024 * 1024


def router_artifact_path(code_dir: Path, rel: str) -> str:
    """The artifact's path in the function, after checking at synth time that it is in the
    code asset (a manifest and at most 20 MB): a deploy never ships a gateway that would
    refuse to start."""
    d = (code_dir / rel).resolve()
    if not d.is_relative_to(code_dir.resolve()) or not (d / "manifest.json").is_file():
        raise ValueError(f"router_artifact {rel!r}: no artifact (manifest.json) at {d} inside the code asset "
                         f"{code_dir}; copy the output of `tiergate router train` there")
    size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    if size > MAX_ARTIFACT_BYTES:
        raise ValueError(f"router_artifact {rel!r} is {size} bytes, over the {MAX_ARTIFACT_BYTES}-byte budget")
    return f"{TASK_ROOT}/{d.relative_to(code_dir.resolve()).as_posix()}"


class GatewayStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        code_dir: Path,
        layer_dir: Path,
        cascade_definition: dict[str, Any],
    ) -> None:
        super().__init__(
            scope, construct_id,
            env=Environment(account=stage.account, region=stage.region),
            description=f"tiergate {stage.name}: API, functions, cascades, observability",
        )
        self.stage = stage
        self.code_dir = code_dir
        self.namespace = f"Tiergate/{stage.name}"
        self.secret_name = f"{stage.prefix}/provider-keys"
        self.secret = secretsmanager.Secret(
            self, "ProviderKeys",
            secret_name=self.secret_name,
            description="tiergate master key (master_key) and provider keys (fields named like OPENAI_API_KEY)",
            # Only the master key is generated; provider keys are added after deploy.
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({}), generate_string_key="master_key",
                exclude_punctuation=True, password_length=48,
            ),
            removal_policy=RemovalPolicy.RETAIN if stage.production else RemovalPolicy.DESTROY,
        )
        deps = DependenciesLayer(self, "Dependencies", asset_dir=layer_dir, architecture=stage.architecture)

        def function(cid: str, name: str, handler: str, *, memory: int, timeout: int, layers: list,
                     reserved: int | None = None) -> GatewayFunction:
            return GatewayFunction(
                self, cid, function_name=f"{stage.prefix}-{name}", description=f"tiergate {name}",
                code_dir=code_dir, handler=handler, architecture=stage.architecture, layers=layers,
                memory_mb=memory, timeout_s=timeout, log_retention_days=stage.log_retention_days,
                snapstart=stage.snapstart, reserved_concurrency=reserved,
            )

        self.api_fn = function("ApiFunction", "api", API_HANDLER, memory=stage.memory_mb,
                               timeout=stage.timeout_s, layers=[deps.layer], reserved=stage.reserved_concurrency)
        self.cascade_fn = function("CascadeFunction", "cascade", CASCADE_HANDLER,
                                   memory=stage.cascade_memory_mb, timeout=stage.timeout_s, layers=[deps.layer])
        self.stream_fn: GatewayFunction | None = None
        if stage.streaming:
            adapter = web_adapter_layer(self, "WebAdapter", architecture=stage.architecture,
                                        version=stage.web_adapter_layer_version)
            self.stream_fn = function("StreamFunction", "stream", STREAM_HANDLER, memory=stage.memory_mb,
                                      timeout=stage.stream_timeout_s, layers=[deps.layer, adapter],
                                      reserved=stage.reserved_concurrency)

        self.cascade = CascadeStateMachine(
            self, "Cascade", state_machine_name=f"{stage.prefix}-cascade", definition=cascade_definition,
            step_function_arn=self.cascade_fn.alias_arn, log_retention_days=stage.log_retention_days,
        )
        self.api = GatewayApi(
            self, "Gateway", api_name=f"{stage.prefix}-api", stage_name=stage.name,
            buffered_handler=self.api_fn.live,
            streaming_handler=self.stream_fn.live if self.stream_fn else None,
            buffered_timeout_s=stage.timeout_s, streaming_timeout_s=stage.stream_timeout_s,
            throttle_rate_limit=stage.throttle_rate_limit, throttle_burst_limit=stage.throttle_burst_limit,
            log_retention_days=stage.log_retention_days,
        )
        self.alarm_topic: sns.Topic | None = None
        if stage.alarm_email:
            # enforce_ssl: the topic refuses publishes and subscriptions over plain HTTP.
            self.alarm_topic = sns.Topic(self, "AlarmTopic", display_name=f"{stage.prefix} alarms", enforce_ssl=True)
            self.alarm_topic.add_subscription(sns_subs.EmailSubscription(stage.alarm_email))
        self.observability = GatewayObservability(
            self, "Observability", dashboard_name=f"{stage.prefix}", api_name=f"{stage.prefix}-api",
            api_stage=stage.name, service=POWERTOOLS_SERVICE, namespace=self.namespace,
            p99_latency_ms=stage.alarm_p99_latency_ms, error_rate_percent=stage.alarm_5xx_rate_percent,
            budget_percent=stage.budget_alarm_percent, alarm_topic=self.alarm_topic,
        )
        # Aliases are referenced by ARN string, so state the ordering explicitly.
        for fn in self.serving_functions:
            self.api.node.add_dependency(fn.alias)
        self.cascade.node.add_dependency(self.cascade_fn.alias)
        self._wire()
        self._outputs()
        acknowledge_gateway(self)

    @property
    def serving_functions(self) -> list[GatewayFunction]:
        return [f for f in (self.api_fn, self.stream_fn) if f is not None]

    def table_names(self) -> dict[str, str]:
        """TIERGATE_TABLE_<KEY> suffix -> table name (fixed names from the data stack)."""
        return {key: table_name(self.stage.prefix, logical) for logical, key in SETTINGS_KEYS.items()}

    def data_policy(self) -> iam.PolicyStatement:
        resources = []
        for logical in SETTINGS_KEYS:
            arn = self.format_arn(service="dynamodb", resource="table",
                                  resource_name=table_name(self.stage.prefix, logical))
            resources.append(arn)
            resources += [f"{arn}/index/{index}" for index in TABLE_INDEXES.get(logical, ())]
        return iam.PolicyStatement(actions=list(DATA_ACTIONS), resources=resources)

    def _wire(self) -> None:
        common = self.common_environment()
        for fn in self.serving_functions:
            fn.add_environment({**common,
                                "TIERGATE_CASCADE_STATE_MACHINE_ARN": self.cascade.state_machine.state_machine_arn})
            fn.role.add_to_policy(self.data_policy())
            fn.role.add_to_policy(self.secret_policy())
            self.cascade.state_machine.grant_start_sync_execution(fn.role)
        if self.stream_fn is not None:
            self.stream_fn.add_environment({
                "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
                "AWS_LWA_INVOKE_MODE": "response_stream",
                "AWS_LWA_PORT": STREAM_PORT,
                "PORT": STREAM_PORT,
                "AWS_LWA_READINESS_CHECK_PATH": HEALTH_PATH,
            })
        # The cascade step calls providers (keys from the secret) and, like the API, reserves
        # and settles each step's budget and writes its usage record (the tables).
        self.cascade_fn.add_environment(common)
        self.cascade_fn.role.add_to_policy(self.data_policy())
        self.cascade_fn.role.add_to_policy(self.secret_policy())
        self.cascade.state_machine.add_to_role_policy(iam.PolicyStatement(
            actions=["lambda:InvokeFunction"], resources=[self.cascade_fn.alias_arn]))

    def secret_policy(self) -> iam.PolicyStatement:
        """Read the provider-keys secret, addressed by name (Secrets Manager appends a
        6-character suffix to secret ARNs, hence ``-??????``)."""
        arn = self.format_arn(service="secretsmanager", resource="secret",
                              resource_name=f"{self.secret_name}-??????",
                              arn_format=ArnFormat.COLON_RESOURCE_NAME)
        return iam.PolicyStatement(actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                   resources=[arn])

    def common_environment(self) -> dict[str, str]:
        env = {
            "TIERGATE_ENVIRONMENT": "production",
            "TIERGATE_STORE": "dynamodb",
            "TIERGATE_PROVIDER_KEYS_SECRET": self.secret_name,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "POWERTOOLS_SERVICE_NAME": POWERTOOLS_SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": self.namespace,
        }
        env.update({f"TIERGATE_TABLE_{key}": name for key, name in self.table_names().items()})
        if self.stage.catalog_path:
            env["TIERGATE_CONFIG"] = self.stage.catalog_path
        if self.stage.router_artifact:
            env["TIERGATE_ROUTER_ARTIFACT"] = router_artifact_path(self.code_dir, self.stage.router_artifact)
        return env

    def _outputs(self) -> None:
        CfnOutput(self, "ApiUrl", value=self.api.url, description="REST API stage URL")
        CfnOutput(self, "OpenAIBaseUrl", value=f"{self.api.url}v1", description="base_url for OpenAI SDKs")
        CfnOutput(self, "ProviderKeysSecretName", value=self.secret_name)
        CfnOutput(self, "CascadeStateMachineArn", value=self.cascade.state_machine.state_machine_arn)
        CfnOutput(self, "DashboardName", value=self.observability.dashboard.dashboard_name)

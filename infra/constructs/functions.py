"""One gateway Lambda function: python3.12, SnapStart on published versions behind the
``live`` alias, its own log group and a role with no managed policies.

Everything that calls the function (API Gateway, Step Functions) must call ``alias``:
SnapStart only applies to published versions, never ``$LATEST``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.layers import lambda_architecture

ALIAS_NAME = "live"
#: The code asset (``layers/build.py:function_asset_dir``: sources + cpython-312 bytecode)
#: minus what the runtime never needs: bytecode of any other interpreter (a dev machine's
#: cpython-311 ``__pycache__`` when the plain functions/ directory is given) and tool caches.
CODE_EXCLUDES = ["**/*.pyc", "!**/*.cpython-312.pyc", "**/.pytest_cache", "**/*.egg-info"]


class GatewayFunction(Construct):
    """Attributes: ``function``, ``alias``, ``live`` (the alias as an ``IFunction`` addressed
    by its ARN string, which callers use), ``alias_arn``, ``role``, ``log_group``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_name: str,
        description: str,
        code_dir: Path,
        handler: str,
        architecture: str,
        layers: Sequence[lambda_.ILayerVersion],
        memory_mb: int,
        timeout_s: int,
        log_retention_days: int,
        snapstart: bool,
        reserved_concurrency: int | None = None,
        environment: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = log_group(self, "Logs", name=f"/aws/lambda/{function_name}", days=log_retention_days)
        # An explicit role instead of AWSLambdaBasicExecutionRole: logs only to our group.
        self.role = iam.Role(
            self, "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name} execution role",
        )
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:log-stream:*"],
        ))
        self.function = lambda_.Function(
            self, "Function",
            function_name=function_name,
            description=description,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_architecture(architecture),
            code=lambda_.Code.from_asset(str(code_dir), exclude=CODE_EXCLUDES),
            handler=handler,
            layers=list(layers),
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_s),
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snapstart else None,
            reserved_concurrent_executions=reserved_concurrency,
            environment=dict(environment or {}),
        )
        # current_version hashes code + configuration, so each change publishes a new
        # version (and SnapStart snapshots it at publish time); the alias follows it.
        self.alias = lambda_.Alias(
            self, "Live", alias_name=ALIAS_NAME, version=self.function.current_version,
        )
        # Callers reference the alias by ARN (function ARN + ":live") rather than by Ref: the
        # template then also deploys on emulators that do not model AWS::Lambda::Alias.
        self.alias_arn = f"{self.function.function_arn}:{ALIAS_NAME}"
        self.live = lambda_.Function.from_function_attributes(
            self, "LiveRef", function_arn=self.alias_arn, same_environment=True,
        )

    def add_environment(self, variables: dict[str, str]) -> None:
        for key, value in variables.items():
            self.function.add_environment(key, value)


_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS",
    1096: "THREE_YEARS", 1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS", 3288: "NINE_YEARS", 3653: "TEN_YEARS",
}


def log_group(scope: Construct, construct_id: str, *, days: int, name: str | None = None) -> logs.LogGroup:
    """A log group with the stage's retention, removed with the stack (logs are not data)."""
    return logs.LogGroup(scope, construct_id, log_group_name=name, retention=retention_days(days),
                         removal_policy=RemovalPolicy.DESTROY)


def retention_days(days: int) -> logs.RetentionDays:
    """Map a day count to the RetentionDays member (the count is validated in StageConfig)."""
    return logs.RetentionDays[_RETENTION[days]]

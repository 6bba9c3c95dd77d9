"""cdk-nag (AwsSolutions) acknowledgements, each with the reason it does not apply.

cdk-nag 3 uses CDK's ``Validations.of(construct).acknowledge``; every finding is
acknowledged on the narrowest construct that owns it, by its full id (``Rule[finding]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

if TYPE_CHECKING:
    from infra.constructs.functions import GatewayFunction
    from infra.stacks.data import DataStack
    from infra.stacks.gateway import GatewayStack

XRAY_AND_LOG_DELIVERY = (
    "X-Ray PutTraceSegments/PutTelemetryRecords and the CloudWatch Logs delivery APIs used by "
    "Step Functions logging do not support resource-level permissions, so they require Resource '*'."
)
NO_PITR = {
    "RateLimits": "Rate-limit windows live for seconds to minutes (TTL); a restore would only bring back stale windows.",
    "Usage": "Usage records are append-only telemetry with TTL, also published as CloudWatch metrics; "
             "PITR is enabled on keys and budgets, the tables that cannot be rebuilt.",
    "Idempotency": "Idempotency records expire by TTL within hours; restoring them has no value.",
    "Cache": "Cached responses expire by TTL and are re-asked on a miss; restoring them has no value.",
}
API_AUTH = ("Clients authenticate with the gateway's own bearer keys (OpenAI SDKs send "
            "'Authorization: Bearer'); the app verifies them (hashed virtual keys, master key in Secrets Manager).")


def _ack(scope: IConstruct, rule: str, reason: str) -> None:
    rule_id = rule if rule.startswith("Annotation::") else f"AwsSolutions::{rule}"
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def acknowledge_data(stack: DataStack) -> None:
    tables = stack.tables
    for logical, table in (("RateLimits", tables.ratelimits), ("Usage", tables.usage),
                           ("Idempotency", tables.idempotency), ("Cache", tables.cache)):
        _ack(table, "AwsSolutions-DDB3", NO_PITR[logical])


def _acknowledge_function(fn: GatewayFunction) -> None:
    stack = Stack.of(fn)
    log_id = stack.get_logical_id(fn.log_group.node.default_child)
    _ack(fn, f"AwsSolutions-IAM5[Resource::<{log_id}.Arn>:log-stream:*]",
         "Log streams are created by the runtime with generated names; the grant is limited to this "
         "function's own log group.")
    _ack(fn, "AwsSolutions-IAM5[Resource::*]", XRAY_AND_LOG_DELIVERY)
    _ack(fn, "Annotation::@aws-cdk/aws-lambda:snapStartRequirePublish",
         "Every configuration publishes a version (current_version) and callers use the 'live' alias.")
    _ack(fn, "AwsSolutions-L1",
         "Pinned to python3.12: the dependencies layer ships cp312 wheels and cpython-312 bytecode "
         "(layers/build.py); the runtime and the layer are upgraded together.")


def acknowledge_gateway(stack: GatewayStack) -> None:
    for fn in (stack.api_fn, stack.cascade_fn, stack.stream_fn):
        if fn is not None:
            _acknowledge_function(fn)
    _ack(stack.cascade.state_machine, "AwsSolutions-IAM5[Resource::*]", XRAY_AND_LOG_DELIVERY)
    _ack(stack.secret, "AwsSolutions-SMG4",
         "Provider API keys are issued and rotated at each provider, and the master key by updating the "
         "secret; the gateway re-reads the secret every few minutes (SecretsLookup max_age), so no "
         "rotation Lambda is needed.")
    if stack.alarm_topic is not None:
        _ack(stack.alarm_topic, "AwsSolutions-SNS2",
             "CloudWatch alarm actions cannot publish to a topic encrypted with the AWS-managed SNS key, and "
             "alarm notifications carry only alarm names and states (no prompts, keys or usage data).")
    api = stack.api.api
    _ack(api, "AwsSolutions-APIG2",
         "Requests are validated by the app (pydantic), which must answer with OpenAI-shaped errors; "
         "API Gateway request validation would answer in its own format.")
    _ack(api, "AwsSolutions-APIG3",
         "A WAFv2 web ACL is optional (cost, rule choice per deployment); docs/deploy.md explains how to attach one.")
    _ack(api, "AwsSolutions-APIG4", API_AUTH)
    _ack(api, "AwsSolutions-COG4", API_AUTH)
    _ack(api, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
              "AmazonAPIGatewayPushToCloudWatchLogs]",
         "The account-level API Gateway logging role uses the AWS-managed policy AWS documents for it.")

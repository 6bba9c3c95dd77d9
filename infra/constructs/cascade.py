"""The cascade state machine: Step Functions Express, started synchronously by the API
function (``StartSyncExecution``).

The ASL comes from the cascades code (``tiergate.cascade.definition.definition``) as a
dict; the step function's ARN reaches it through the ``${CascadeStepArn}`` substitution,
so the definition never embeds CloudFormation tokens. Logging is ALL events *without*
execution data: inputs and outputs carry prompts, which never go to logs by default.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs.functions import log_group

STEP_ARN_PLACEHOLDER = "${CascadeStepArn}"


def fallback_definition(step_function_arn: str) -> dict[str, Any]:
    """A minimal valid ASL (one Lambda task) for when the cascades module is absent."""
    return {
        "Comment": "tiergate cascade (fallback: one step)",
        "StartAt": "Step",
        "States": {
            "Step": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": step_function_arn, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "End": True,
            }
        },
    }


def cascade_definition(step_function_arn: str = STEP_ARN_PLACEHOLDER) -> dict[str, Any]:
    """The real definition from the gateway code (default policy from the catalog model)."""
    from tiergate.cascade.definition import definition
    from tiergate.config.cascades import CascadePolicy

    return definition(CascadePolicy(), step_function_arn=step_function_arn)


class CascadeStateMachine(Construct):
    """Attributes: ``state_machine``, ``log_group``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine_name: str,
        definition: dict[str, Any],
        step_function_arn: str,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = log_group(self, "Logs", name=f"/aws/vendedlogs/states/{state_machine_name}",
                                   days=log_retention_days)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            state_machine_name=state_machine_name,
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_string(json.dumps(definition)),
            definition_substitutions={"CascadeStepArn": step_function_arn},
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL,
                                include_execution_data=False),
        )

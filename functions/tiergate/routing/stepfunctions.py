"""The cascade as an Amazon States Language definition, generated from the policy (issue 5).

One Lambda function (:mod:`tiergate.handlers.cascade`) serves every task; the payload's
``step`` says which. The policy's data (steps, thresholds, ceiling) is embedded by the
``Init`` state, so the definition follows the catalog instead of being copied by hand::

    Init -> Answer -> Score -> Accept? --yes--> Finish
              ^                   | no
              |              MoreSteps? --no--> Finish
              |                   | yes
              |            WithinCeiling? --no--> Finish      (only with max_cost_usd)
              |                   | yes
              +------------- Escalate

    Answer/Score: Retry on tiergate.errors.RETRYABLE_ERROR_NAMES (exponential backoff,
    full jitter); Catch States.ALL -> HaveBest? --yes--> Finish, --no--> Failed (the
    caught error's name, so the API maps it back to the same GatewayError class).

The state's shape is described in :mod:`tiergate.routing.cascade_steps`. ``parallel``
policies run in process only (the engine cancels the losers, which a Map state cannot).
"""

from __future__ import annotations

from typing import Any

from tiergate.errors import RETRYABLE_ERROR_NAMES
from tiergate.routing.cascade_steps import initial_cursor
from tiergate.routing.policy import CascadePolicy

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


def _task(step: str, function_arn: str, *, result_path: str, next_state: str, retry: bool,
          catch: bool, timeout_s: int) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": function_arn, "Payload": {"step": step, "state.$": "$"}},
        "ResultSelector": {"value.$": "$.Payload"},
        "ResultPath": result_path,
        "TimeoutSeconds": timeout_s,
        "Next": next_state,
    }
    if retry:
        state["Retry"] = [{
            "ErrorEquals": list(RETRYABLE_ERROR_NAMES),
            "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0, "MaxDelaySeconds": 8,
            "JitterStrategy": "FULL",
        }]
    if catch:
        state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "HaveBest?"}]
    return state


def _unwrap(path: str, next_state: str) -> dict[str, Any]:
    """ResultSelector nests the payload under ``value``; lift it to ``path``."""
    return {"Type": "Pass", "InputPath": f"{path}.value", "ResultPath": path, "Next": next_state}


def definition(policy: CascadePolicy, *, step_function_arn: str, policy_name: str = "default",
               step_timeout_s: int = 120) -> dict[str, Any]:
    """The ASL (a dict; ``json.dumps`` it) for one cascade policy."""
    if policy.mode == "parallel":
        raise ValueError("parallel cascades run in process; Step Functions runs escalate and refine policies")
    ceiling = policy.max_cost_usd
    task = {"function_arn": step_function_arn, "timeout_s": step_timeout_s}
    states: dict[str, Any] = {
        "Init": {
            "Type": "Pass",
            "Parameters": {
                "request.$": "$.request", "task_type.$": "$.task_type", "principal.$": "$.principal",
                "request_id.$": "$.request_id",
                "policy": {"name": policy_name, "targets": list(policy.targets()),
                           "spec": policy.model_dump(mode="json")},
                "cursor": initial_cursor(policy),
            },
            "Next": "Answer",
        },
        "Answer": _task("answer", result_path="$.current", next_state="AnswerResult", retry=True, catch=True, **task),
        "AnswerResult": _unwrap("$.current", "Score"),
        "Score": _task("score", result_path="$.cursor", next_state="ScoreResult", retry=True, catch=True, **task),
        "ScoreResult": _unwrap("$.cursor", "Accept?"),
        "Accept?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.cursor.score", "NumericGreaterThanEqualsPath": "$.cursor.threshold",
                         "Next": "Finish"}],
            "Default": "MoreSteps?",
        },
        "MoreSteps?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.cursor.has_next", "BooleanEquals": True,
                         "Next": "WithinCeiling?" if ceiling is not None else "Escalate"}],
            "Default": "Finish",
        },
        "Escalate": {"Type": "Pass", "InputPath": "$.cursor.next_index", "ResultPath": "$.cursor.index",
                     "Next": "Answer"},
        "HaveBest?": {
            "Type": "Choice",
            "Choices": [{"And": [{"Variable": "$.cursor.best", "IsPresent": True},
                                 {"Variable": "$.cursor.best", "IsNull": False}], "Next": "Finish"}],
            "Default": "Failed",
        },
        "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        "Finish": {
            "Type": "Task",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {"FunctionName": step_function_arn, "Payload": {"step": "finish", "state.$": "$"}},
            "OutputPath": "$.Payload",
            "TimeoutSeconds": step_timeout_s,
            "End": True,
        },
    }
    if ceiling is not None:
        states["WithinCeiling?"] = {
            "Type": "Choice",
            "Choices": [{"Variable": "$.cursor.projected_usd", "NumericLessThanEquals": ceiling,
                         "Next": "Escalate"}],
            "Default": "Finish",
        }
    return {
        "Comment": f"tiergate cascade '{policy_name}' ({policy.mode}: {', '.join(policy.targets())})",
        "StartAt": "Init",
        "States": states,
    }

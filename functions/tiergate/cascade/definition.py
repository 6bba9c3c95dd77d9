"""The cascade as an Amazon States Language definition, generated from the policy.

One Lambda function (:mod:`tiergate.handlers.cascade`) serves every task; the payload's
``step`` says which. Every decision is taken by the shared steps
(:mod:`tiergate.cascade.steps`); the ``Choice`` state only reads ``cursor.next``::

    Init -> Next? --answer--> Answer -> Score --------> Next?
              |                 | (Catch)               ^
              |                 +------> Recover -------+
              +--finish--> Finish           +--fail--> Failed

    Answer: Retry on tiergate.errors.RETRYABLE_ERROR_NAMES (exponential backoff, full
    jitter) and on Lambda's own transient errors; any failure left goes to Recover, which
    records it and decides like the in-process engine (escalate, stop with the best answer,
    or fail with the caught error's name, so the API maps it back to the same GatewayError).

The execution input is the state :func:`tiergate.cascade.steps.start` builds (without
``policy``, which ``Init`` embeds from the catalog). ``parallel`` policies run in
process only (the engine cancels the losers, which a state machine cannot).
"""

from __future__ import annotations

from typing import Any

from tiergate.config.cascades import CascadePolicy
from tiergate.errors import RETRYABLE_ERROR_NAMES

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
#: Lambda's own transient invoke errors (AWS's recommended retry set for Lambda tasks).
LAMBDA_TRANSIENT = ("Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                    "Lambda.TooManyRequestsException")


def _task(step: str, function_arn: str, *, result_path: str, next_state: str, timeout_s: int,
          retry_names: tuple[str, ...], catch_to: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": function_arn, "Payload": {"step": step, "state.$": "$"}},
        "ResultSelector": {"value.$": "$.Payload"},
        "ResultPath": result_path,
        "TimeoutSeconds": timeout_s,
        "Next": next_state,
        "Retry": [{"ErrorEquals": list(retry_names), "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0,
                   "MaxDelaySeconds": 8, "JitterStrategy": "FULL"}],
    }
    if catch_to:
        state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": catch_to}]
    return state


def _unwrap(path: str, next_state: str) -> dict[str, Any]:
    """ResultSelector nests the payload under ``value``; lift it to ``path``."""
    return {"Type": "Pass", "InputPath": f"{path}.value", "ResultPath": path, "Next": next_state}


def definition(policy: CascadePolicy, *, step_function_arn: str, policy_name: str = "default",
               step_timeout_s: int = 120) -> dict[str, Any]:
    """The ASL (a dict; ``json.dumps`` it) for one cascade policy."""
    if policy.mode == "parallel":
        raise ValueError("parallel cascades run in process; Step Functions runs escalate and refine policies")
    task = {"function_arn": step_function_arn, "timeout_s": step_timeout_s}
    model_errors = (*RETRYABLE_ERROR_NAMES, *LAMBDA_TRANSIENT)
    states: dict[str, Any] = {
        "Init": {
            "Type": "Pass",
            "Parameters": {
                "request.$": "$.request", "task_type.$": "$.task_type", "principal.$": "$.principal",
                "request_id.$": "$.request_id", "cursor.$": "$.cursor",
                "policy": {"name": policy_name, "spec": policy.model_dump(mode="json")},
            },
            "Next": "Next?",
        },
        "Next?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.cursor.next", "StringEquals": "answer", "Next": "Answer"},
                        {"Variable": "$.cursor.next", "StringEquals": "fail", "Next": "Failed"}],
            "Default": "Finish",
        },
        "Answer": _task("answer", result_path="$.current", next_state="AnswerResult", retry_names=model_errors,
                        catch_to="Recover", **task),
        "AnswerResult": _unwrap("$.current", "Score"),
        "Score": _task("score", result_path="$.cursor", next_state="ScoreResult", retry_names=LAMBDA_TRANSIENT,
                       catch_to="Recover", **task),
        "ScoreResult": _unwrap("$.cursor", "Next?"),
        "Recover": _task("recover", result_path="$.cursor", next_state="RecoverResult",
                         retry_names=LAMBDA_TRANSIENT, catch_to=None, **task),
        "RecoverResult": _unwrap("$.cursor", "Next?"),
        "Failed": {"Type": "Fail", "ErrorPath": "$.cursor.failure.Error", "CausePath": "$.cursor.failure.Cause"},
        "Finish": {
            "Type": "Task",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {"FunctionName": step_function_arn, "Payload": {"step": "finish", "state.$": "$"}},
            "OutputPath": "$.Payload",
            "TimeoutSeconds": step_timeout_s,
            "Retry": [{"ErrorEquals": list(LAMBDA_TRANSIENT), "IntervalSeconds": 1, "MaxAttempts": 2,
                       "BackoffRate": 2.0}],
            "End": True,
        },
    }
    return {
        "Comment": f"tiergate cascade '{policy_name}' ({policy.mode}: {', '.join(policy.targets())})",
        "StartAt": "Init",
        "States": states,
    }

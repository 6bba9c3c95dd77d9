"""The cascade state machine, started synchronously (``StartSyncExecution`` of the Express
state machine); a failed execution is turned back into the gateway error whose class name
Step Functions reported. Implements :class:`tiergate.cascade.runner.RemoteCascade`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tiergate import errors
from tiergate.aws.clients import client


class StepFunctionsCascade:
    """``run(input)`` -> the state machine's output dict. ``sfn_client``: boto3
    ``stepfunctions`` client."""

    def __init__(self, state_machine_arn: str, *, sfn_client: Any = None) -> None:
        self._arn = state_machine_arn
        self._client = sfn_client  # created on first use: boto3 stays off the init path

    def run(self, payload: Mapping[str, Any], *, name: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"stateMachineArn": self._arn, "input": json.dumps(payload)}
        if name:
            kwargs["name"] = name
        if self._client is None:
            self._client = client("stepfunctions")
        result = self._client.start_sync_execution(**kwargs)
        return decode_execution(result)


def decode_execution(result: Mapping[str, Any]) -> dict[str, Any]:
    """A StartSyncExecution response -> output dict, or the matching GatewayError raised."""
    status = result.get("status")
    if status == "SUCCEEDED":
        output = json.loads(result.get("output") or "{}")
        return output if isinstance(output, dict) else {"output": output}
    if status == "TIMED_OUT":
        raise errors.DeadlineExceeded("cascade timed out")
    name = str(result.get("error") or "")
    cause = str(result.get("cause") or name or "cascade failed")
    cls = getattr(errors, name, None)
    # The state machine reports our exception class names (they double as ErrorEquals).
    if isinstance(cls, type) and issubclass(cls, errors.GatewayError):
        raise _construct(cls, cause)
    raise errors.UpstreamError(f"cascade failed: {name or status}: {cause}")


def _construct(cls: type[errors.GatewayError], cause: str) -> errors.GatewayError:
    message = cause
    try:
        parsed = json.loads(cause)  # a Lambda task's cause is {"errorMessage": ..., ...}
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            message = str(parsed["errorMessage"])
    except ValueError:
        pass
    if cls is errors.RateLimited:
        return errors.RateLimited(message, retry_after=1.0)
    return cls(message)

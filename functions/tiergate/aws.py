"""AWS control plane for the gateway: secrets and Step Functions (data lives in
stores/dynamodb.py). The only module besides that one that imports boto3; both boto3 and
Powertools are imported lazily so the edge never pays for them.

``SecretsLookup`` reads ONE Secrets Manager secret holding a JSON object::

    {"master_key": "...", "OPENAI_API_KEY": "sk-...", "ANTHROPIC_API_KEY": "..."}

(``master_key`` is generated at deploy time; provider fields are named after the env var
the catalog gives for each provider). Reads go through Powertools Parameters with a
per-instance cache of ``max_age_s`` seconds, so a rotated key is picked up without a
redeploy and nothing secret ever sits in an environment variable.

``CascadeRunner`` starts the Express cascade state machine synchronously and turns a
failed execution back into the gateway error whose class name Step Functions reported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tiergate import errors

MASTER_KEY_FIELD = "master_key"


def client(service: str, *, endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 client; ``endpoint_url`` points it at moto/LocalStack in tests."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url, region_name=region)


class SecretsLookup:
    """Cached access to the provider-keys secret. ``secrets_client``: a boto3
    ``secretsmanager`` client (one is created when omitted)."""

    def __init__(self, secret_id: str, *, max_age_s: int = 300, secrets_client: Any = None) -> None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        self._secret_id = secret_id
        self._max_age_s = max_age_s
        # A provider per instance keeps the cache out of module globals.
        self._provider = SecretsProvider(boto3_client=secrets_client or client("secretsmanager"))

    def values(self) -> dict[str, str]:
        """The whole secret as a dict (cached for ``max_age_s``)."""
        from aws_lambda_powertools.utilities.parameters.exceptions import (
            GetParameterError,
            TransformParameterError,
        )

        try:
            raw = self._provider.get(self._secret_id, max_age=self._max_age_s, transform="json")
        except TransformParameterError as exc:
            raise errors.ServiceUnavailable("provider-keys secret is not a JSON object") from exc
        except GetParameterError as exc:
            raise errors.ServiceUnavailable("provider-keys secret is unavailable") from exc
        if not isinstance(raw, Mapping):
            raise errors.ServiceUnavailable("provider-keys secret is not a JSON object")
        return {str(k): str(v) for k, v in raw.items() if v is not None}

    def master_key(self) -> str | None:
        return self.values().get(MASTER_KEY_FIELD) or None

    def provider_key(self, env_name: str) -> str | None:
        """The key stored under ``env_name`` (e.g. ``OPENAI_API_KEY``), or None."""
        return self.values().get(env_name) or None

    def __call__(self, env_name: str) -> str | None:
        """So a lookup can be passed wherever a ``name -> key`` resolver is expected."""
        return self.provider_key(env_name)


class CascadeRunner:
    """``run(input)`` -> the state machine's output dict. ``sfn_client``: boto3
    ``stepfunctions`` client."""

    def __init__(self, state_machine_arn: str, *, sfn_client: Any = None) -> None:
        self._arn = state_machine_arn
        self._client = sfn_client or client("stepfunctions")

    def run(self, payload: Mapping[str, Any], *, name: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"stateMachineArn": self._arn, "input": json.dumps(payload)}
        if name:
            kwargs["name"] = name
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

"""Provider keys and the master key in the cloud home: ONE Secrets Manager secret holding
a JSON object::

    {"master_key": "...", "OPENAI_API_KEY": "sk-...", "ANTHROPIC_API_KEY": "..."}

(``master_key`` is generated at deploy time; provider fields are named after the env var
the catalog gives for each provider). Reads go through Powertools Parameters with a
per-instance cache of ``max_age_s`` seconds, so a rotated key is picked up without a
redeploy and nothing secret ever sits in an environment variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from tiergate import errors
from tiergate.aws.clients import client
from tiergate.providers.credentials import EnvKeyResolver, KeyResolver
from tiergate.settings import Settings

MASTER_KEY_FIELD = "master_key"


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


def cloud_settings_and_keys(settings: Settings) -> tuple[Settings, KeyResolver]:
    """Settings with the master key from the secret (unless set), and a key resolver that
    reads provider keys from it; without a secret configured, the environment."""
    if not settings.provider_keys_secret:
        return settings, EnvKeyResolver()
    lookup = SecretsLookup(settings.provider_keys_secret)  # cached (Powertools Parameters)
    if settings.master_key is None:
        master = lookup.master_key()
        if master:
            settings = settings.model_copy(update={"master_key": SecretStr(master)})
    return settings, EnvKeyResolver(secret_lookup=lookup)

"""Settings and provider keys in the cloud home: secrets come from one Secrets Manager
JSON secret (``TIERGATE_PROVIDER_KEYS_SECRET``) whose fields are ``master_key`` and the
provider key names (``OPENAI_API_KEY`` ...). Nothing secret is in the environment."""

from __future__ import annotations

from pydantic import SecretStr

from tiergate.keys import EnvKeyResolver, KeyResolver
from tiergate.settings import Settings


def cloud_settings_and_keys(settings: Settings | None = None) -> tuple[Settings, KeyResolver]:
    settings = settings or Settings()
    if not settings.provider_keys_secret:
        return settings, EnvKeyResolver()
    from tiergate.aws import SecretsLookup

    lookup = SecretsLookup(settings.provider_keys_secret)  # cached (Powertools Parameters)
    if settings.master_key is None:
        master = lookup.master_key()
        if master:
            settings = settings.model_copy(update={"master_key": SecretStr(master)})
    return settings, EnvKeyResolver(secret_lookup=lookup)

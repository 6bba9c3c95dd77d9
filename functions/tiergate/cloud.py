"""Settings and provider keys in the cloud home: secrets come from one Secrets Manager
JSON secret (``TIERGATE_PROVIDER_KEYS_SECRET``) whose fields are ``master_key`` and the
provider key names (``OPENAI_API_KEY`` ...). Nothing secret is in the environment."""

from __future__ import annotations

import os

from fastapi import FastAPI
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


def build_cloud_app() -> FastAPI:
    """The app as both Lambda entry points serve it (Mangum and the Web Adapter's uvicorn):
    secrets from Secrets Manager, Powertools telemetry, no device plugins."""
    from tiergate.bootstrap import build_app

    settings, keys = cloud_settings_and_keys()
    telemetry = None
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # in Lambda: EMF metrics, JSON logs, traces
        from tiergate.telemetry import PowertoolsTelemetry

        telemetry = PowertoolsTelemetry(log_prompts=settings.log_prompts)
    app = build_app(settings, key_resolver=keys, with_plugins=False, telemetry=telemetry)
    prewarm(app, snapstart=os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start")
    return app


def prewarm(app: FastAPI, *, snapstart: bool) -> None:
    """Build the provider adapters the catalog uses during init, so the first request does
    not pay for their imports (aiohttp, its TLS contexts). The LiteLLM adapter (``import
    litellm``: seconds) is built only under SnapStart, whose snapshot is taken after init
    once per published version; without SnapStart it stays lazy, off the init path."""
    services = app.state.services
    for adapter in sorted({m.adapter for m in services.catalog.models}):
        if adapter == "litellm" and not snapstart:
            continue
        if services.registry.has(adapter):
            provider = services.registry.get(adapter)
            warm = getattr(provider, "warm", None)
            if warm is not None:
                warm()

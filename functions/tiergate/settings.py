"""Process settings from the environment (``TIERGATE_*``). Nothing else reads os.environ
for configuration; provider keys are looked up by the key resolver by the names the
catalog gives. A ``TIERGATE_*`` variable that names no setting is refused with the
nearest name: a typo must not silently fall back to a default."""

from __future__ import annotations

import difflib
import ipaddress
import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tiergate", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERGATE_", extra="ignore", frozen=True, populate_by_name=True)

    environment: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    config: Path | None = Field(None, description="Catalog YAML; the packaged default when unset")
    master_key: SecretStr | None = None
    data_dir: Path = Field(default_factory=default_data_dir)

    # Stores: embedded SQLite by default; DynamoDB in the cloud (table names set by CDK).
    store: Literal["sqlite", "dynamodb", "memory"] = "sqlite"
    sqlite_path: Path | None = None
    dynamodb_endpoint_url: str | None = None
    table_keys: str = "tiergate-keys"
    table_budgets: str = "tiergate-budgets"
    table_ratelimits: str = "tiergate-ratelimits"
    table_usage: str = "tiergate-usage"
    table_idempotency: str = "tiergate-idempotency"
    table_responses: str = "tiergate-responses"
    #: How long a stored Responses API response (``store: true``) can be continued or read.
    responses_ttl_s: int = Field(30 * 86400, gt=0)
    #: The response cache's table (DynamoDB) / file (SQLite; default ``<data_dir>/cache.sqlite3``).
    table_cache: str = "tiergate-cache"
    cache_path: Path | None = None

    # Cloud: provider keys in Secrets Manager, cascades on Step Functions.
    provider_keys_secret: str | None = None
    cascade_state_machine_arn: str | None = None

    #: The API Gateway stage path Mangum strips (``/prod``), set by the CDK stack.
    base_path: str = "/"
    #: The Lambda runtime's own variables (not TIERGATE_*): in Lambda, and under SnapStart.
    lambda_function_name: str | None = Field(
        None, validation_alias=AliasChoices("AWS_LAMBDA_FUNCTION_NAME"))
    lambda_initialization_type: str | None = Field(
        None, validation_alias=AliasChoices("AWS_LAMBDA_INITIALIZATION_TYPE"))

    #: Prometheus series for ``GET /metrics`` (text/OpenMetrics); off only to measure their cost.
    prometheus_metrics: bool = True
    #: OpenTelemetry (GenAI semantic conventions) over OTLP/HTTP: on when an endpoint is set
    #: (the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``, e.g. ``http://collector:4318``), a no-op otherwise.
    otel_exporter_otlp_endpoint: str | None = Field(None, validation_alias=AliasChoices(
        "TIERGATE_OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"))
    otel_service_name: str = Field("tiergate", validation_alias=AliasChoices(
        "TIERGATE_OTEL_SERVICE_NAME", "OTEL_SERVICE_NAME"))
    otel_metric_export_interval_s: float = Field(15.0, gt=0)
    #: ``/dashboard`` sessions: how long a sign-in lasts.
    dashboard_session_ttl_s: int = Field(8 * 3600, gt=0)
    #: A learned-router artifact directory; overrides the catalog's ``routing.learned.path``
    #: (the cloud: the artifact shipped in the function asset, set by CDK).
    router_artifact: Path | None = None

    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    key_cache_ttl_s: float = Field(5.0, ge=0)
    log_prompts: bool = False

    @model_validator(mode="after")
    def _refuse_open_production(self) -> Settings:
        # Outside development a gateway must not run open: the master key comes from the
        # environment or (cloud) from the provider-keys secret's ``master_key`` field.
        if self.environment == "production" and self.master_key is None and self.provider_keys_secret is None:
            raise ValueError("TIERGATE_MASTER_KEY (or TIERGATE_PROVIDER_KEYS_SECRET) is required in production")
        return self

    @model_validator(mode="after")
    def _known_variables(self) -> Settings:
        unknown = unknown_variables(os.environ, set(type(self).model_fields))
        if unknown:
            raise ValueError("unknown setting(s): " + "; ".join(unknown))
        return self

    @property
    def in_lambda(self) -> bool:
        return self.lambda_function_name is not None

    @property
    def snapstart(self) -> bool:
        return self.lambda_initialization_type == "snap-start"

    @property
    def resolved_sqlite_path(self) -> Path:
        return self.sqlite_path or (self.data_dir / "tiergate.sqlite3")


#: ``TIERGATE_*`` names other settings own: the edge agent's, the layer build's, the benchmarks'.
FOREIGN = ("TIERGATE_EDGE_", "TIERGATE_CLOUD_KEY", "TIERGATE_PYTHON312", "TIERGATE_BENCH_")


def unknown_variables(environ: dict[str, str] | os._Environ[str], fields: set[str]) -> list[str]:
    """``TIERGATE_*`` variables naming no field, each with the nearest known name."""
    known = {f"TIERGATE_{f.upper()}" for f in fields}
    out = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("TIERGATE_") or upper in known or upper.startswith(FOREIGN):
            continue
        near = difflib.get_close_matches(upper, sorted(known), n=1)
        out.append(f"{name} (did you mean {near[0]}?)" if near else name)
    return out


def is_loopback(host: str) -> bool:
    """Binding here reaches only this machine (safe without a master key)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

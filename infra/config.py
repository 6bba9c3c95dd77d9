"""Typed stage configuration for the CDK app.

A stage is one deployment (``dev``, ``prod``...). ``StageConfig`` is frozen and rejects
unknown fields; ``load_stage`` builds it from the CDK context (``cdk.json`` holds the
defaults under ``tiergate:stages``; ``-c stage=prod`` picks one; any field can be
overridden with ``-c tiergate:<field>=<value>``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Offline synth needs *some* account/region; this one never exists.
DUMMY_ACCOUNT = "123456789012"


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("dev", pattern=r"^[a-z][a-z0-9-]{0,19}$")
    account: str = Field(DUMMY_ACCOUNT, pattern=r"^\d{12}$")
    region: str = "us-east-1"
    #: SnapStart for Python supports arm64 (the Lambda docs list no architecture limit since
    #: 2024; only provisioned concurrency, EFS and >512 MB ephemeral storage are excluded).
    architecture: Literal["arm64", "x86_64"] = "arm64"
    memory_mb: int = Field(1024, ge=128, le=10240)
    cascade_memory_mb: int = Field(1024, ge=128, le=10240)
    #: None = unreserved (shares the account pool).
    reserved_concurrency: int | None = Field(None, ge=1)
    timeout_s: int = Field(60, ge=3, le=900)
    #: The streaming route's integration and function timeout (REST streaming allows > 29 s).
    stream_timeout_s: int = Field(300, ge=3, le=900)
    log_retention_days: int = 30
    snapstart: bool = True
    #: Serve ``POST /v1/chat/completions`` and ``/v1/completions`` through the Lambda Web
    #: Adapter with REST response streaming; off = everything buffered through Mangum.
    streaming: bool = True
    #: Lambda Web Adapter layer version (public layer in account 753240598075).
    web_adapter_layer_version: int = Field(26, ge=1)
    throttle_rate_limit: float = Field(50, gt=0)
    throttle_burst_limit: int = Field(100, ge=1)
    #: Production stages retain data and turn on deletion protection.
    production: bool = False
    alarm_p99_latency_ms: int = Field(20_000, ge=1)
    alarm_5xx_rate_percent: float = Field(5.0, gt=0, le=100)
    budget_alarm_percent: float = Field(80.0, gt=0, le=100)
    #: Who is told when an alarm fires (an SNS topic with an e-mail subscription); None = no topic.
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    #: Optional catalog path inside the code asset (TIERGATE_CONFIG); None = packaged default.
    catalog_path: str | None = None
    #: A learned-router artifact directory inside the code asset (functions/), shipped with
    #: the functions (TIERGATE_ROUTER_ARTIFACT): every function loads it at init (SnapStart
    #: snapshots it loaded); a new artifact is a new deploy. None = the catalog's own path.
    router_artifact: str | None = Field(None, pattern=r"^[A-Za-z0-9_./-]+$")
    #: Layer asset directory; None = ``layers/build.py`` output for ``architecture``.
    layer_dir: str | None = None

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, v: int) -> int:
        allowed = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                   2557, 2922, 3288, 3653}
        if v not in allowed:
            raise ValueError(f"log_retention_days must be one of CloudWatch's values {sorted(allowed)}")
        return v

    @property
    def prefix(self) -> str:
        return f"tiergate-{self.name}"


#: Built-in stage presets; cdk.json's ``tiergate:stages`` may override or add stages.
STAGE_PRESETS: dict[str, dict[str, Any]] = {
    "dev": {"log_retention_days": 14},
    "prod": {"production": True, "memory_mb": 1769, "reserved_concurrency": 100, "log_retention_days": 90},
}

_COERCE = {"true": True, "false": False, "none": None, "null": None}


def _coerce(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in _COERCE:
        return _COERCE[value.lower()]
    return value


def load_stage(context: dict[str, Any]) -> StageConfig:
    """``context``: a mapping of CDK context keys (``node.try_get_context`` results)."""
    name = context.get("stage") or "dev"
    stages: dict[str, dict[str, Any]] = context.get("tiergate:stages") or {}
    raw: dict[str, Any] = {"name": name, **STAGE_PRESETS.get(name, {}), **stages.get(name, {})}
    for field in StageConfig.model_fields:
        override = context.get(f"tiergate:{field}")
        if override is not None:
            raw[field] = _coerce(override)
    return StageConfig.model_validate(raw)

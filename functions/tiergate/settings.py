"""Process settings from the environment (``TIERGATE_*``). Nothing else reads os.environ
for configuration; provider keys are looked up by the key resolver by the names the
catalog gives."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tiergate", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERGATE_", extra="ignore", frozen=True)

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

    # Cloud: provider keys in Secrets Manager, cascades on Step Functions.
    provider_keys_secret: str | None = None
    cascade_state_machine_arn: str | None = None

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

    @property
    def resolved_sqlite_path(self) -> Path:
        return self.sqlite_path or (self.data_dir / "tiergate.sqlite3")

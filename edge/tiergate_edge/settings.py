"""Edge settings from the environment (``TIERGATE_EDGE_*``; the cloud key from
``TIERGATE_CLOUD_KEY``). The CLI builds the same model from its flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tiergate.settings import default_data_dir

OffloadPolicy = Literal["local-only", "prefer-local", "prefer-cloud"]


def _default_threads() -> int:
    return max(1, os.cpu_count() or 1)


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERGATE_EDGE_", extra="ignore", frozen=True,
                                      populate_by_name=True)

    #: A GGUF path, a name from ``tiergate models list``, or ``bundled:smollm2-135m`` (the default).
    model: str = "bundled:smollm2-135m"
    #: llama.cpp chat format; None uses the GGUF's own chat template.
    chat_format: str | None = None
    #: Cap on the local context window (the model's trained context is used up to this).
    n_ctx_cap: int = Field(4096, ge=64)
    n_threads: int = Field(default_factory=_default_threads, ge=1)
    n_batch: int = Field(512, ge=1)
    seed: int = 0
    #: Tier the local model serves (its catalog tier).
    local_tier: int = Field(0, ge=0, le=4)
    #: Fraction of the local context window kept free beyond prompt + max output.
    context_headroom: float = Field(0.05, ge=0, lt=1)
    #: Max output tokens of a local answer when the request does not say: short, so a
    #: small model's runaway loop ends in a few seconds (the catalog's max_output_tokens caps it).
    default_max_tokens: int = Field(256, ge=1)
    #: System prompt of a local answer when the client sends none ("" for none).
    system_prompt: str = "You are a helpful assistant. Answer directly and concisely."
    #: Resident local models share this budget (weights + KV cache); the least recently used idle one goes.
    memory_budget_mb: int = Field(2048, ge=64)
    #: RAM for saved prompt states of interleaved conversations (0: only the resident context's prefix reuse).
    prompt_cache_mb: int = Field(0, ge=0)

    #: The cloud gateway's base URL (without /v1); None means offline-only.
    cloud_url: str | None = None
    cloud_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TIERGATE_CLOUD_KEY", "TIERGATE_EDGE_CLOUD_KEY"))
    policy: OffloadPolicy = "prefer-local"
    #: Escalate to the cloud when the local answer is empty, truncated or a refusal.
    escalate_poor_answers: bool = True
    #: Score below which a local answer is escalated (the cascade scorer's 0..1 scale).
    escalate_threshold: float = Field(0.5, ge=0, le=1)

    #: A router artifact (``tiergate router train``) whose outcome keys include ``local``: it
    #: decides local vs cloud for ``auto`` (offload when local is predicted below target).
    router_artifact: Path | None = None
    quality_target: float = Field(0.95, gt=0, le=1)

    probe_interval_s: float = Field(15.0, gt=0)
    probe_timeout_s: float = Field(2.0, gt=0)
    probe_backoff_min_s: float = Field(0.5, gt=0)
    probe_backoff_max_s: float = Field(5.0, gt=0)
    offload_timeout_s: float = Field(120.0, gt=0)

    #: Response cache on the device: off, exact, or semantic (exact and semantic).
    cache: Literal["off", "exact", "semantic"] = "off"
    cache_ttl_s: int = Field(3600, ge=1)
    #: Cosine similarity a semantic hit needs (the lexical guard must pass too).
    cache_threshold: float = Field(0.9, gt=0, le=1)

    data_dir: Path = Field(default_factory=default_data_dir)
    queue_path: Path | None = None
    drain_concurrency: int = Field(2, ge=1, le=32)
    job_lease_s: float = Field(300.0, gt=0)
    usage_sync_interval_s: float = Field(30.0, gt=0)
    usage_sync_batch: int = Field(200, ge=1, le=5000)
    #: The dashboard's edge view: one status sample per interval (the last 360 kept).
    history_interval_s: float = Field(10.0, gt=0)

    @field_validator("cloud_url")
    @classmethod
    def _strip_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError("cloud_url must start with http:// or https://")
        return v.removesuffix("/v1")

    @property
    def cloud_api_base(self) -> str | None:
        return f"{self.cloud_url}/v1" if self.cloud_url else None

    @property
    def resolved_queue_path(self) -> Path:
        return self.queue_path or (self.data_dir / "edge-queue.sqlite3")

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

"""The vocabulary every config model shares: tiers, task types, capabilities, and the
strict frozen base (unknown fields rejected, nothing mutable after validation)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The tier range, in one place: 0 local/cheapest, 1 fast, 2 balanced, 3 premium, 4 external.
MIN_TIER = 0
MAX_TIER = 4
TIERS: tuple[int, ...] = tuple(range(MIN_TIER, MAX_TIER + 1))
Tier = Annotated[int, Field(ge=MIN_TIER, le=MAX_TIER)]

TaskType = Literal["coding", "general", "analysis", "premium", "realtime"]
TASK_TYPES: tuple[str, ...] = ("coding", "general", "analysis", "premium", "realtime")

#: ``embeddings``: the deployment embeds text (``/v1/embeddings``) and serves nothing else.
#: ``messages_api`` / ``responses_api``: the endpoint also speaks Anthropic Messages / OpenAI
#: Responses natively, so those doors pass bodies through unchanged (thinking blocks,
#: cache_control, hosted tools survive) instead of translating them to chat.
Capability = Literal["tools", "vision", "json", "json_schema", "embeddings", "messages_api", "responses_api"]
#: Capabilities that say how a deployment can be reached, not what a chat request needs.
DIALECT_CAPABILITIES: dict[str, str] = {"messages_api": "anthropic", "responses_api": "responses"}


class Strict(BaseModel):
    """Config data: unknown fields are an error, and a validated model is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

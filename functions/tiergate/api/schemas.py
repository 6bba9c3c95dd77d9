"""Request shapes. Validation only: the validated JSON dict is what travels on, so
OpenAI parameters we do not model (seed, top_p, logit_bias, user ...) pass through."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _parts(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, p in enumerate(v):
                if "type" not in p:
                    raise ValueError(f"content part {i} has no 'type'")
        return v


class StreamOptions(_Open):
    include_usage: bool = False


class ChatRequest(_Open):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("n")
    @classmethod
    def _only_one(cls, v: int | None) -> int | None:
        if v is not None and v != 1:
            raise ValueError("only n=1 is supported")
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, t in enumerate(v or ()):
            if t.get("type") != "function" or not isinstance(t.get("function"), dict) or not t["function"].get("name"):
                raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
        return v

    @field_validator("response_format")
    @classmethod
    def _rf(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and v.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError("response_format.type must be 'text', 'json_object' or 'json_schema'")
        return v


TaskTypeIn = Literal["coding", "general", "analysis", "premium", "realtime", "auto"]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    task_type: TaskTypeIn = "auto"
    preferred_tier: int | None = Field(None, ge=0, le=4)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    system: str | None = None


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1)
    language: str = Field("python", min_length=1, max_length=40)
    include_tests: bool = False
    preferred_tier: int | None = Field(None, ge=0, le=4)
    max_tokens: int | None = Field(None, ge=1)


class RouteRequest(ChatRequest):
    """``POST /v1/route``: a chat request (never sent), optionally with a ``draft`` answer to score."""

    draft: dict[str, Any] | str | None = None
    #: The learned router's quality target for this dry run (as ``x-tiergate-quality-target``).
    quality_target: float | None = Field(None, gt=0, le=1)

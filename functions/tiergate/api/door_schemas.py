"""Request shapes of the Anthropic Messages, Responses, legacy completions and embeddings
doors. Validation only (as :mod:`tiergate.api.schemas`): the validated JSON dict travels
on, so fields we do not model pass through to native deployments unchanged."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The most inputs one embeddings request may carry (OpenAI's limit).
MAX_EMBEDDING_INPUTS = 2048


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


def _blocks(v: Any, what: str) -> Any:
    if isinstance(v, list):
        for i, b in enumerate(v):
            if not isinstance(b, dict) or not isinstance(b.get("type"), str):
                raise ValueError(f"{what} block {i} must be an object with a 'type'")
    return v


# --- Anthropic Messages ------------------------------------------------------------------


class AnthropicMessage(_Open):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _content(cls, v: Any) -> Any:
        return _blocks(v, "content")


class AnthropicTool(_Open):
    name: str = Field(min_length=1, max_length=128)
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema(self) -> AnthropicTool:
        if self.type in (None, "custom") and self.input_schema is None:
            raise ValueError("a custom tool needs an 'input_schema'")
        return self


class AnthropicToolChoice(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _named(self) -> AnthropicToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs a 'name'")
        return self


class MessagesRequest(_Open):
    model: str | None = None
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    metadata: dict[str, Any] | None = None
    stream: bool = False

    @field_validator("system")
    @classmethod
    def _system(cls, v: Any) -> Any:
        return _blocks(v, "system")


class CountTokensRequest(MessagesRequest):
    """``/v1/messages/count_tokens``: a Messages body without ``max_tokens``."""

    max_tokens: int | None = Field(None, ge=1)  # type: ignore[assignment]


# --- OpenAI Responses --------------------------------------------------------------------


class ResponsesRequest(_Open):
    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = Field(None, min_length=1, max_length=200)
    store: bool = True
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None

    @field_validator("input")
    @classmethod
    def _input(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not v:
                raise ValueError("input must not be empty")
            for i, it in enumerate(v):
                if not isinstance(it.get("type"), str) and "role" not in it:
                    raise ValueError(f"input item {i} needs a 'type' (or a 'role')")
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, t in enumerate(v or ()):
            if not isinstance(t.get("type"), str):
                raise ValueError(f"tools[{i}] needs a 'type'")
            if t["type"] == "function" and not isinstance(t.get("name"), str):
                raise ValueError(f"tools[{i}]: a function tool needs a 'name'")
        return v

    @field_validator("text")
    @classmethod
    def _text(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        fmt = (v or {}).get("format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
                raise ValueError("text.format.type must be 'text', 'json_object' or 'json_schema'")
            if fmt["type"] == "json_schema" and not isinstance(fmt.get("schema"), dict):
                raise ValueError("text.format of type 'json_schema' needs a 'schema' object")
        return v


# --- legacy completions --------------------------------------------------------------------


class CompletionsRequest(_Open):
    model: str | None = None
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=1)
    best_of: int | None = Field(None, ge=1, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    echo: bool = False
    suffix: None = None
    logprobs: None = None

    @field_validator("prompt")
    @classmethod
    def _one(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("exactly one prompt per request is supported")
        return v


# --- embeddings ----------------------------------------------------------------------------


class EmbeddingsRequest(_Open):
    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _input(cls, v: Any) -> Any:
        if isinstance(v, str):
            if not v:
                raise ValueError("input must not be empty")
            return v
        if not v:
            raise ValueError("input must not be empty")
        if len(v) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request")
        if any(x == "" or x == [] for x in v):
            raise ValueError("inputs must not be empty")
        return v

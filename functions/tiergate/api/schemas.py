"""Request shapes. Validation only: the validated JSON dict is what travels on, so
OpenAI parameters we do not model pass through.

Types are strict, as the OpenAI API's are: ``stream: "yes"``, ``temperature: false`` or
``max_tokens: "10"`` are 400s, not coerced; tool ``parameters`` and a ``json_schema``
response format must be JSON Schemas (:mod:`tiergate.api.json_schema`). Every error is
an OpenAI-shaped 400 naming the parameter.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, StrictStr, field_validator

from tiergate.api.json_schema import SchemaProblem, check_schema

#: A JSON number (an int is one; a bool or a string is not).
Number = Annotated[float, Strict()]
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal", "input_image"})


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[dict[str, Any]] | None = None
    name: StrictStr | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: StrictStr | None = None

    @field_validator("content")
    @classmethod
    def _parts(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, p in enumerate(v):
                t = p.get("type")
                if not isinstance(t, str):
                    raise ValueError(f"content part {i} has no 'type'")
                if t not in _PART_TYPES:
                    raise ValueError(f"content part {i} has an unknown type {t!r}")
                if t == "text" and not isinstance(p.get("text"), str):
                    raise ValueError(f"content part {i} of type 'text' needs a string 'text'")
        return v


class StreamOptions(_Open):
    include_usage: StrictBool = False


class ChatRequest(_Open):
    model: StrictStr | None = None
    messages: list[Message] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt | None = Field(None, ge=1)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    temperature: Number | None = Field(None, ge=0, le=2)
    top_p: Number | None = Field(None, ge=0, le=1)
    presence_penalty: Number | None = Field(None, ge=-2, le=2)
    frequency_penalty: Number | None = Field(None, ge=-2, le=2)
    seed: StrictInt | None = None
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)
    logit_bias: dict[str, Number] | None = None
    user: StrictStr | None = None
    parallel_tool_calls: StrictBool | None = None
    stop: StrictStr | list[StrictStr] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("n")
    @classmethod
    def _only_one(cls, v: int | None) -> int | None:
        if v is not None and v != 1:
            raise ValueError("only n=1 is supported")
        return v

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, t in enumerate(v or ()):
            fn = t.get("function")
            if t.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
            if not _FUNCTION_NAME.match(fn["name"]):
                raise ValueError(f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-'")
            if "description" in fn and not isinstance(fn["description"], str):
                raise ValueError(f"tools[{i}].function.description must be a string")
            if "strict" in fn and not isinstance(fn["strict"], bool | None):
                raise ValueError(f"tools[{i}].function.strict must be a boolean")
            if fn.get("parameters") is not None:
                if not isinstance(fn["parameters"], dict):
                    raise ValueError(f"tools[{i}].function.parameters must be a JSON Schema object")
                try:
                    check_schema(fn["parameters"], f"Invalid schema for function '{fn['name']}': parameters")
                except SchemaProblem as e:
                    raise ValueError(str(e)) from None
        return v

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in ("none", "auto", "required"):
            raise ValueError("tool_choice must be 'none', 'auto', 'required' or {'type': 'function', ...}")
        if isinstance(v, dict) and (v.get("type") not in ("function", "allowed_tools", "custom")):
            raise ValueError("tool_choice.type must be 'function'")
        return v

    @field_validator("response_format")
    @classmethod
    def _rf(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        if v.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError("response_format.type must be 'text', 'json_object' or 'json_schema'")
        if v["type"] == "json_schema":
            js = v.get("json_schema")
            if not isinstance(js, dict) or not isinstance(js.get("name"), str):
                raise ValueError("response_format.json_schema needs a 'name' (and a 'schema')")
            if js.get("schema") is not None:
                try:
                    check_schema(js["schema"], "Invalid schema for response_format: schema")
                except SchemaProblem as e:
                    raise ValueError(str(e)) from None
        return v


TaskTypeIn = Literal["coding", "general", "analysis", "premium", "realtime", "auto"]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: StrictStr = Field(min_length=1)
    task_type: TaskTypeIn = "auto"
    preferred_tier: StrictInt | None = Field(None, ge=0, le=4)
    max_tokens: StrictInt | None = Field(None, ge=1)
    temperature: Number | None = Field(None, ge=0, le=2)
    system: StrictStr | None = None


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: StrictStr = Field(min_length=1)
    language: StrictStr = Field("python", min_length=1, max_length=40)
    include_tests: StrictBool = False
    preferred_tier: StrictInt | None = Field(None, ge=0, le=4)
    max_tokens: StrictInt | None = Field(None, ge=1)


class RouteRequest(ChatRequest):
    """``POST /v1/route``: a chat request (never sent), optionally with a ``draft`` answer to score."""

    draft: dict[str, Any] | str | None = None
    #: The learned router's quality target for this dry run (as ``x-tiergate-quality-target``).
    quality_target: float | None = Field(None, gt=0, le=1)

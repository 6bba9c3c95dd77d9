"""The vocabulary every config model shares: tiers, task types, capabilities, and the
strict frozen base (unknown fields rejected, nothing mutable after validation)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NoReturn

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


def _readonly(*_: Any, **__: Any) -> NoReturn:
    raise TypeError("configuration is immutable once validated")


class FrozenDict(dict):  # type: ignore[type-arg]
    """A dict that refuses mutation (still a dict for serialization and isinstance)."""

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=repr)))


class FrozenList(list):  # type: ignore[type-arg]
    """A list that refuses mutation."""

    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = sort = reverse = _readonly  # type: ignore[assignment]
    __iadd__ = __imul__ = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))


def freeze(value: Any) -> Any:
    """Deeply immutable containers (models are frozen themselves)."""
    if isinstance(value, FrozenDict | FrozenList):
        return value
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(freeze(v) for v in value)
    if isinstance(value, set):
        return frozenset(value)
    return value


class Strict(BaseModel):
    """Config data: unknown fields are an error, and a validated model is frozen, deeply:
    its dicts and lists refuse mutation too (a frozen model's dict field otherwise would not)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def model_post_init(self, context: Any, /) -> None:
        for name in type(self).model_fields:
            value = self.__dict__.get(name)
            frozen = freeze(value)
            if frozen is not value:
                object.__setattr__(self, name, frozen)

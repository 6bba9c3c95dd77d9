"""``model`` as the gateway reads it, parsed in one place.

A request's ``model`` is a catalog model name (a group of deployments), an alias (resolved
here, loops rejected by the catalog), ``tier:N``, ``auto`` or ``cascade[:policy]``. Every
home and every front door parses it with :meth:`ModelRef.parse`, so ``tier:9`` is the
same error everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tiergate.config.base import MAX_TIER, MIN_TIER
from tiergate.errors import InvalidRequest, ModelNotFound

Kind = Literal["model", "tier", "auto", "cascade"]
DEFAULT_CASCADE_POLICY = "default"
#: Longest accepted model reference (a name, an alias, tier:N, cascade:<policy>).
MAX_MODEL_CHARS = 256


@dataclass(frozen=True, slots=True)
class ModelRef:
    #: What the client sent (or the catalog's default model).
    requested: str
    kind: Kind
    #: After alias resolution: the model name, ``tier:N``, ``auto`` or ``cascade[:p]``.
    target: str
    tier: int | None = None
    policy: str | None = None

    @classmethod
    def parse(cls, requested: object, *, aliases: Mapping[str, str] | None = None,
              default: str = "auto") -> ModelRef:
        """Parse ``model``; raises :class:`InvalidRequest` for a non-string or a name with
        control characters, :class:`ModelNotFound` for a malformed ``tier:N``."""
        if requested is None or requested == "":
            requested = default
        if not isinstance(requested, str):
            raise InvalidRequest("'model' must be a string", param="model")
        if len(requested) > MAX_MODEL_CHARS or not requested.isprintable():
            raise InvalidRequest("'model' must be a printable name of at most "
                                 f"{MAX_MODEL_CHARS} characters", param="model")
        target = resolve_alias(requested, aliases or {})
        if target == "auto":
            return cls(requested, "auto", target)
        if target == "cascade" or target.startswith("cascade:"):
            return cls(requested, "cascade", target, policy=target.partition(":")[2] or DEFAULT_CASCADE_POLICY)
        if target.startswith("tier:"):
            return cls(requested, "tier", target, tier=parse_tier(target, requested))
        return cls(requested, "model", target)


def parse_tier(target: str, requested: str | None = None) -> int:
    text = target.split(":", 1)[1]
    if not text.isdigit() or not MIN_TIER <= int(text) <= MAX_TIER:
        raise ModelNotFound(f"Invalid tier in model '{requested or target}': use tier:{MIN_TIER} .. tier:{MAX_TIER}",
                            param="model")
    return int(text)


def resolve_alias(name: str, aliases: Mapping[str, str]) -> str:
    seen: set[str] = set()
    while name in aliases:
        if name in seen:  # pragma: no cover - rejected when the catalog is resolved
            raise InvalidRequest(f"alias loop at {name!r}")
        seen.add(name)
        name = aliases[name]
    return name

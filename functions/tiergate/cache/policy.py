"""Whether a request may be answered from the cache, and may leave its answer there.

Three levels decide, the most specific last:

* the catalog's ``cache`` section (absent parts are off);
* the virtual key's ``cache`` setting: ``off`` (never), ``exact`` (exact only, catalog
  settings or defaults), ``semantic`` (exact and semantic), or unset (the catalog);
* the request's ``x-tiergate-cache`` header: ``use`` (default), ``bypass`` (neither read
  nor write), ``refresh`` (do not read; call upstream; replace the entry).

Then the request itself: only deterministic ones (temperature 0 or a seed) unless the
catalog says otherwise; semantically only if the last message is the user's plain text
question and no tools, images or JSON schema are involved (unless opted in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tiergate.cache.key import deterministic, question
from tiergate.config.cache import CacheConfig, ExactCacheConfig, SemanticCacheConfig
from tiergate.errors import InvalidRequest
from tiergate.request import GatewayRequest

HEADER = "x-tiergate-cache"
Mode = Literal["use", "bypass", "refresh"]
KeySetting = Literal["off", "exact", "semantic"]
MODES: tuple[str, ...] = ("use", "bypass", "refresh")


@dataclass(frozen=True, slots=True)
class Decision:
    exact: ExactCacheConfig | None = None
    semantic: SemanticCacheConfig | None = None
    #: Look up (False for refresh and bypass).
    read: bool = False
    #: Store the answer (False for bypass).
    write: bool = False
    #: Why a part is off for this request ("" when everything applies).
    reason: str = ""
    #: The cache is configured for this caller at all (else no header is sent).
    configured: bool = False

    @property
    def active(self) -> bool:
        return (self.exact is not None or self.semantic is not None) and (self.read or self.write)


OFF = Decision()


def request_mode(req: GatewayRequest) -> Mode:
    raw = req.hint(HEADER, "use").strip().lower() or "use"
    if raw not in MODES:
        raise InvalidRequest(f"{HEADER} must be one of {', '.join(MODES)} (got {raw[:40]!r})", param=HEADER)
    return raw  # type: ignore[return-value]


def _semantic_blocker(body: dict[str, Any], cfg: SemanticCacheConfig, caps: frozenset[str]) -> str | None:
    if "tools" in caps and not cfg.allow_tools:
        return "semantic: the request has tools (not opted in)"
    if "vision" in caps and not cfg.allow_images:
        return "semantic: the request has images (not opted in)"
    if "json_schema" in caps and not cfg.allow_json_schema:
        return "semantic: the request has a JSON schema (not opted in)"
    msgs = body.get("messages") or []
    if not msgs or not isinstance(msgs[-1], dict) or msgs[-1].get("role") != "user":
        return "semantic: the last message is not the user's"
    if not question(msgs[-1]):
        return "semantic: the last user message has no text"
    return None


def decide(cfg: CacheConfig, key_setting: str | None, req: GatewayRequest, *,
           semantic_available: bool) -> Decision:
    """The cache decision for one request (raises a 400 for a bad header)."""
    mode = request_mode(req)
    exact, semantic = cfg.exact, cfg.semantic
    if key_setting == "off":
        return Decision(reason="this key has caching off", configured=cfg.configured)
    if key_setting in ("exact", "semantic"):
        exact = exact or ExactCacheConfig()
        semantic = (semantic or SemanticCacheConfig()) if key_setting == "semantic" else None
    if exact is None and semantic is None:
        return OFF
    if mode == "bypass":
        return Decision(reason=f"{HEADER}: bypass", configured=True)
    notes: list[str] = []
    det = deterministic(req.body)
    if exact is not None and exact.deterministic_only and not det:
        exact = None
        notes.append("not deterministic (temperature is not 0 and no seed)")
    if semantic is not None:
        why = None
        if not semantic_available:
            why = "semantic: no embedding model in this home"
        elif semantic.deterministic_only and not det:
            why = "semantic: not deterministic"
        else:
            why = _semantic_blocker(req.body, semantic, req.needs.capabilities)
        if why is not None:
            semantic = None
            if exact is not None:
                notes.append(why)
            elif not notes:
                notes.append(why)
    return Decision(exact=exact, semantic=semantic, read=mode == "use", write=True, reason="; ".join(notes),
                    configured=True)

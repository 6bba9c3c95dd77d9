"""The response cache as the gateway sees it: one lookup before the upstream call, one
keep after it.

:meth:`ResponseCache.lookup` decides (:mod:`tiergate.cache.policy`), computes the exact
key (and, when the semantic cache applies, the scope and the question's embedding) and
looks up: exact first, then semantic -- an exact miss never hides a semantic hit, and a
semantic hit is never taken where an exact one exists. :meth:`ResponseCache.keep` stores a
fresh, complete answer under the keys the lookup computed. A cache that fails (a store
outage) is a miss, logged, never a failed request.

What a hit means is the gateway's business (no reservation, a usage record with
``cache_hit`` and the cost saved); this module only finds and keeps answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tiergate.cache.key import exact_key, question, semantic_scope
from tiergate.cache.policy import HEADER, OFF, Decision, decide
from tiergate.cache.store import Entry, ExactStore
from tiergate.config.cache import CacheConfig, SemanticCacheConfig
from tiergate.config.catalog import ModelSpec
from tiergate.limits.admission import Principal
from tiergate.request import GatewayRequest

log = logging.getLogger(__name__)
AGE_HEADER = "x-tiergate-cache-age"
SIMILARITY_HEADER = "x-tiergate-cache-similarity"
REASON_HEADER = "x-tiergate-cache-reason"
#: Semantic entries are bounded by the exact section's size limit, or this without one.
DEFAULT_MAX_ENTRY_BYTES = 256 * 1024


class Probe(Protocol):
    """A semantic lookup's computed parts (scope, question, embedding), kept for the store."""


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    entry: Entry
    similarity: float
    #: The cached question that matched (for POST /v1/route).
    question: str = ""


class SemanticLookup(Protocol):
    """The semantic cache (:class:`tiergate.cache.semantic.SemanticCache`)."""

    async def probe(self, scope: str, text: str) -> Probe: ...

    async def find(self, probe: Probe, cfg: SemanticCacheConfig, *, now: float) -> tuple[SemanticMatch | None, str]:
        """The best entry passing the threshold and the guard, and why (not)."""
        ...

    async def add(self, probe: Probe, entry: Entry, blob: bytes, cfg: SemanticCacheConfig) -> bool: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Lookup:
    decision: Decision
    #: The ``x-tiergate-cache`` value so far: hit, semantic-hit, miss, bypass; None: no cache.
    status: str | None
    reason: str = ""
    entry: Entry | None = None
    deployment: ModelSpec | None = None
    similarity: float | None = None
    age_s: float | None = None
    tenant: str = ""
    #: The deployment group (or cascade) the key was computed for.
    group: str = ""
    key: str | None = None
    probe: Probe | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def hit(self) -> bool:
        return self.entry is not None and self.deployment is not None

    @property
    def storable(self) -> bool:
        return self.decision.write and (self.key is not None or self.probe is not None)

    def headers(self) -> dict[str, str]:
        if self.status is None:
            return {}
        h = {HEADER: self.status}
        if self.age_s is not None:
            h[AGE_HEADER] = str(int(self.age_s))
        if self.similarity is not None:
            h[SIMILARITY_HEADER] = f"{self.similarity:.4f}"
        if self.reason and not self.hit:
            h[REASON_HEADER] = self.reason
        return h


NO_CACHE = Lookup(OFF, None)


def _group(plan: Any) -> str:
    if plan.mode == "cascade":
        return f"cascade:{plan.cascade_policy}"
    return plan.candidates[0].name if plan.candidates else ""


def _complete(response: Mapping[str, Any]) -> bool:
    choices = response.get("choices")
    return bool(choices) and all(isinstance(c, dict) and c.get("finish_reason") for c in choices)


class ResponseCache:
    def __init__(self, cfg: CacheConfig, deployments: Mapping[str, ModelSpec], *, exact: ExactStore | None,
                 semantic: SemanticLookup | None = None, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self._by_id = deployments
        self.exact = exact
        self.semantic = semantic
        self._clock = clock

    def decide(self, req: GatewayRequest, principal: Principal) -> Decision:
        key = principal.metadata.get("key")
        return decide(self.cfg, getattr(key, "cache", None), req, semantic_available=self.semantic is not None)

    async def lookup(self, req: GatewayRequest, principal: Principal, plan: Any) -> Lookup:
        """The cache step: a hit (``entry`` and ``deployment`` set) or what to keep later."""
        d = self.decide(req, principal)
        if not d.configured:
            return NO_CACHE
        if not d.active:
            return Lookup(d, "bypass", d.reason)
        target, group = req.ref.target, _group(plan)
        look = Lookup(d, "miss", d.reason, tenant=principal.tenant, group=group)
        semantic = d.semantic is not None and self.semantic is not None
        try:
            if d.exact is not None and self.exact is not None:
                look.key = exact_key(principal.tenant, target, group, req.body)
            now = self._clock()
            if look.key is not None and d.read:
                assert self.exact is not None
                e = await self.exact.get(look.key, now=now)
                if e is not None and self._serve(look, e, principal, now):
                    look.status = "hit"
                    return look
                look.notes.append("exact: no entry for this request" if e is None
                                  else "exact: the entry's model is not usable by this key")
            if semantic:
                # Embedded only after an exact miss: a repeat never pays for the model.
                assert self.semantic is not None
                look.probe = await self.semantic.probe(semantic_scope(principal.tenant, target, group, req.body),
                                                       question(req.messages[-1]))
            if not d.read:
                look.reason = f"{HEADER}: refresh"
                return look
            if look.probe is not None and d.semantic is not None:
                assert self.semantic is not None
                m, why = await self.semantic.find(look.probe, d.semantic, now=now)
                if m is not None and self._serve(look, m.entry, principal, now):
                    look.status, look.similarity = "semantic-hit", m.similarity
                    look.notes.append(f"semantic: similarity {m.similarity:.3f} >= {d.semantic.threshold} and the "
                                      f"guard matches the cached question {m.question[:200]!r}")
                    return look
                look.notes.append(why)
        except Exception:  # a cache that fails is a miss, never a failed request
            log.exception("cache lookup failed; treating as a miss")
            return Lookup(d, "miss", "cache unavailable")
        return look

    def _serve(self, look: Lookup, e: Entry, principal: Principal, now: float) -> bool:
        spec = self._by_id.get(e.deployment_id)
        # Defense in depth: the tenant is in the key's hash already.
        if e.tenant != principal.tenant or spec is None or not principal.may_use(spec):
            return False
        look.entry, look.deployment, look.age_s = e, spec, max(0.0, now - e.stored_at)
        return True

    async def keep(self, look: Lookup, response: dict[str, Any], deployment: ModelSpec, cost_usd: float) -> None:
        """Store a fresh answer under the lookup's keys; ``look.status`` becomes ``stored``
        when it was (``miss`` and a reason otherwise)."""
        if not look.storable:
            return
        d = look.decision
        if not _complete(response):
            look.reason = "the answer is incomplete"
            return
        if not look.group.startswith("cascade:") and deployment.name != look.group:
            # A fallback to another model (up a tier, or a budget downgrade) answered: the key
            # names the planned group, so this answer is not stored under it.
            look.reason = f"answered by {deployment.name}, not the planned {look.group}"
            return
        now = self._clock()
        max_bytes = d.exact.max_entry_bytes if d.exact is not None else DEFAULT_MAX_ENTRY_BYTES
        try:
            stored = False
            if look.key is not None and d.exact is not None and self.exact is not None:
                entry = Entry(look.key, look.tenant, response, deployment.deployment_id, cost_usd, now,
                              now + d.exact.ttl_s)
                blob = entry.encode()
                limit = min(max_bytes, self.exact.max_entry_bytes or max_bytes)
                if len(blob) > limit:
                    look.reason = f"answer of {len(blob)} bytes is over the {limit}-byte entry limit"
                else:
                    stored = await self.exact.put(entry, blob, replace=not d.read)
                    if not stored:
                        look.reason = "a concurrent request stored this answer first"
            if look.probe is not None and d.semantic is not None and self.semantic is not None:
                entry = Entry(look.key or "", look.tenant, response, deployment.deployment_id, cost_usd, now,
                              now + d.semantic.ttl_s)
                blob = entry.encode()
                if len(blob) <= max_bytes:
                    stored = await self.semantic.add(look.probe, entry, blob, d.semantic) or stored
        except Exception:
            log.exception("cache store failed; the answer is served uncached")
            look.reason = "cache unavailable"
            return
        if stored:
            # Still say what did not apply (a semantic cache the request was not eligible for).
            look.status, look.reason = "stored", d.reason

    async def explain(self, req: GatewayRequest, principal: Principal, plan: Any) -> dict[str, Any]:
        """Whether this request would be answered from the cache, and why (or why not), for
        ``POST /v1/route``: the same lookup the request would make, writing nothing."""
        look = await self.lookup(req, principal, plan)
        d = look.decision
        why = [*look.notes, *([d.reason] if d.reason else [])]
        if look.status == "hit":
            why.insert(0, f"an answer to this exact request is cached ({int(look.age_s or 0)}s old)")
        return {"would_hit": look.hit, "status": look.status or "off",
                "exact": d.exact is not None and self.exact is not None,
                "semantic": d.semantic is not None and self.semantic is not None,
                "similarity": round(look.similarity, 4) if look.similarity is not None else None,
                "age_s": int(look.age_s) if look.age_s is not None else None,
                "model": look.deployment.name if look.deployment is not None else None,
                "why": "; ".join(dict.fromkeys(why)) or ("no cache is configured" if look.status is None else "")}

    async def aclose(self) -> None:
        if self.exact is not None:
            await self.exact.aclose()
        if self.semantic is not None:
            await self.semantic.aclose()

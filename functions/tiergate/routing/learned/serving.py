"""The learned router and scorer as the gateway uses them: one loaded artifact, reloaded
when its manifest changes, and the ``auto`` decision over a request's usable candidates.

:class:`LearnedRouting` is built once per app (``compose``) from ``routing.learned``. It
raises :class:`~tiergate.routing.learned.artifact.ArtifactError` at startup for a
missing, corrupt or unknown-model artifact (never a 500 per request). While serving it
checks the manifest's mtime at most every :data:`RELOAD_CHECK_S` seconds; a new artifact
that loads and names only catalog models replaces the old one between two requests, a
broken one is logged and the old one kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tiergate.config.catalog import Catalog, LearnedConfig, ModelSpec
from tiergate.errors import InvalidRequest
from tiergate.limits.admission import Principal
from tiergate.request import GatewayRequest
from tiergate.routing.learned.artifact import Artifact, ArtifactError, load, manifest_mtime
from tiergate.routing.learned.model import ALWAYS_REFERENCE, choose
from tiergate.routing.plan import RoutePlan, Router

log = logging.getLogger(__name__)

TARGET_HEADER = "x-tiergate-quality-target"
RELOAD_CHECK_S = 2.0
DEFAULT_OUTPUT_TOKENS = 256


def load_checked(path: Path, catalog: Catalog) -> Artifact:
    """Load an artifact and refuse one naming models the catalog does not have."""
    a = load(path)
    unknown = a.unknown_models(m.name for m in catalog.models)
    if unknown:
        raise ArtifactError(f"router artifact {path}: names models not in the catalog: {', '.join(unknown)} "
                            f"(catalog models: {', '.join(sorted(catalog.groups))})")
    return a


class LearnedRouting:
    """The current artifact (hot-reloaded) and the configured quality target."""

    def __init__(self, config: LearnedConfig, catalog: Catalog, *, clock: Callable[[], float] = time.monotonic,
                 artifact: Artifact | None = None) -> None:
        self.config = config
        self.catalog = catalog
        self._clock = clock
        self._lock = threading.Lock()
        self._artifact: Artifact | None = artifact
        self._mtime: float | None = None
        self._next_check = 0.0
        if artifact is None and config.path is not None:
            self._mtime = manifest_mtime(config.path)
            self._artifact = load_checked(config.path, catalog)
            self._next_check = clock() + RELOAD_CHECK_S

    @property
    def target(self) -> float:
        return self.config.quality_target

    def current(self) -> Artifact | None:
        """The artifact to use now; reloads it when the manifest changed (checked rarely)."""
        path = self.config.path
        if path is None:
            return self._artifact
        now = self._clock()
        if now < self._next_check:
            return self._artifact
        with self._lock:
            if now < self._next_check:
                return self._artifact
            self._next_check = now + RELOAD_CHECK_S
            mtime = manifest_mtime(path)
            if mtime is not None and mtime != self._mtime:
                try:
                    fresh = load_checked(path, self.catalog)
                except ArtifactError as e:
                    log.error("keeping router artifact %s: the new one does not load: %s",
                              self._artifact.id if self._artifact else None, e)
                else:
                    log.info("router artifact reloaded: %s -> %s", self._artifact.id if self._artifact else None,
                             fresh.id)
                    self._artifact = fresh
                self._mtime = mtime
        return self._artifact

    def target_for(self, req: GatewayRequest, principal: Principal | None = None) -> float:
        """The configured target, tightened (never loosened) by the virtual key's
        ``metadata.quality_target`` and the request's ``x-tiergate-quality-target``."""
        target = self.target
        key = principal.metadata.get("key") if principal is not None else None
        kt = (getattr(key, "metadata", None) or {}).get("quality_target")
        if isinstance(kt, int | float) and not isinstance(kt, bool) and 0 < kt <= 1:
            target = max(target, float(kt))
        raw = req.hint(TARGET_HEADER).strip()
        if not raw:
            return target
        try:
            t = float(raw)
        except ValueError:
            t = -1.0
        if not 0 < t <= 1:
            raise InvalidRequest(f"{TARGET_HEADER} must be a number in (0, 1], got {raw[:40]!r}", param=TARGET_HEADER)
        return max(t, target)

    # --- the auto decision ----------------------------------------------------------------

    def decide(self, a: Artifact, req: GatewayRequest, names: Sequence[str], costs: Mapping[str, float],
               principal: Principal | None = None) -> dict[str, Any]:
        """The router block: predictions for ``names``, the target, the margin, the choice."""
        target = self.target_for(req, principal)
        pred = a.predict(req.messages, req.body, names)
        margin = a.margin(target)
        chosen = choose(pred, costs, ALWAYS_REFERENCE if margin is None else margin, a.reference)
        return {"kind": "learned", "artifact": a.id, "predicted_quality": {m: round(q, 4) for m, q in pred.items()},
                "target": target, "margin": None if margin is None or margin < 0 else round(margin, 4),
                "reference": a.reference, "chosen": chosen}

    def plan(self, router: Router, req: GatewayRequest, principal: Principal, max_tier: int | None
             ) -> RoutePlan | None:
        """``auto`` among the usable candidates the artifact knows; None leaves the request
        to the rules (no artifact, or fewer than two known candidates usable)."""
        a = self.current()
        if a is None:
            return None
        known = [s for s in router.catalog.models if s.name in a.models]
        if max_tier is not None:
            known = [s for s in known if s.tier <= max_tier] or known
        ok, skipped = router.usable(known, principal, req.needs)
        groups: dict[str, list[ModelSpec]] = {}
        for s in ok:
            groups.setdefault(s.name, []).append(s)
        if len(groups) < 2:
            return None
        p = req.needs.prompt_tokens
        costs = {n: min(s.cost_usd(p, req.needs.max_output_tokens or int(a.output_tokens.get(n, DEFAULT_OUTPUT_TOKENS)))
                        for s in specs) for n, specs in groups.items()}
        block = self.decide(a, req, list(groups), costs, principal)
        chosen, pred = block["chosen"], block["predicted_quality"]
        # Fallback: the chosen model's deployments, then the models predicted better, cheapest first.
        rest = sorted((n for n in groups if n != chosen), key=lambda n: (pred[n] < pred[chosen], costs[n]))
        chain: list[ModelSpec] = []
        for n in (chosen, *rest):
            chain += router.order(groups[n])
        shown = ", ".join(f"{n} {q:.2f}" for n, q in sorted(pred.items(), key=lambda kv: -kv[1]))
        how = (f"within {block['margin']:.3f} of the best" if block["margin"] is not None
               else f"target above the calibrated range: reference {a.reference}")
        reason = f"auto (learned {a.id}): predicted quality {shown}; target {block['target']:g} -> {chosen} ({how})"
        return RoutePlan(mode="single", requested=req.ref.requested, reason=reason, candidates=tuple(chain),
                         tier=chain[0].tier, task=req.task, needs=req.needs, skipped=tuple(skipped),
                         extra={"router": block})


class LearnedScorer:
    """The cascade's answer scorer from the artifact (None when it has none) and the
    calibrated accept threshold for a quality target."""

    def __init__(self, routing: LearnedRouting) -> None:
        self.routing = routing

    @property
    def target(self) -> float:
        return self.routing.target

    def target_for(self, req: GatewayRequest, principal: Principal | None = None) -> float:
        return self.routing.target_for(req, principal)

    def available(self) -> bool:
        a = self.routing.current()
        return a is not None and a.scorer is not None

    def score(self, body: Mapping[str, Any], answer: str, model: str | None) -> float | None:
        a = self.routing.current()
        if a is None or a.scorer is None:
            return None
        return a.score(body.get("messages") or [], answer, model, body)

    def threshold(self, target: float | None) -> float | None:
        """The calibrated threshold; above the calibrated range nothing is accepted early (1.01)."""
        a = self.routing.current()
        if a is None or a.scorer is None:
            return None
        th = a.threshold(target if target is not None else self.target)
        return 1.01 if th is None else th

"""The offload decision: a pure function of the request and the local state.

Stay local when the task's tier is within the local model's tier, the prompt plus the
requested output fits the local context with headroom, and nothing the local model
cannot do is asked. Otherwise offload to the cloud when it is configured and reachable.
The policy (``local-only`` / ``prefer-local`` / ``prefer-cloud``) and a per-request
override (``x-tiergate-offload: local|cloud|auto``) bend that; every outcome carries a
short reason that ends up in ``x-tiergate-route-reason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Target = Literal["local", "cloud"]
Override = Literal["local", "cloud", "auto"]
POLICIES = ("local-only", "prefer-local", "prefer-cloud")
OVERRIDES = ("local", "cloud", "auto")


@dataclass(frozen=True, slots=True)
class OffloadRequest:
    task_tier: int
    prompt_tokens: int
    max_output_tokens: int
    capabilities: frozenset[str]


@dataclass(frozen=True, slots=True)
class LocalState:
    local_tier: int
    local_context: int
    local_capabilities: frozenset[str]
    cloud_configured: bool
    cloud_up: bool
    headroom: float = 0.05


@dataclass(frozen=True, slots=True)
class Decision:
    """``targets`` is the ordered chain to try; empty means the cloud is needed but down
    (the caller answers 503 or defers). ``local_capable`` says whether the local model
    could answer at all (context and capabilities), whatever its tier."""

    targets: tuple[Target, ...]
    reason: str
    local_capable: bool
    needs_cloud: bool

    @property
    def primary(self) -> Target | None:
        return self.targets[0] if self.targets else None


def _local_blockers(req: OffloadRequest, st: LocalState) -> list[str]:
    """What makes the local model unable to answer, whatever the policy says."""
    out: list[str] = []
    missing = sorted(req.capabilities - st.local_capabilities)
    if missing:
        out.append("local model lacks " + ",".join(missing))
    budget = int(st.local_context * (1 - st.headroom))
    need = req.prompt_tokens + req.max_output_tokens
    if need > budget:
        out.append(f"needs {need} tokens > local context {budget}")
    return out


def decide(req: OffloadRequest, st: LocalState, *, policy: str = "prefer-local",
           override: str | None = None) -> Decision:
    """Where to answer. Pure: same inputs, same decision."""
    blockers = _local_blockers(req, st)
    capable = not blockers
    within_tier = req.task_tier <= st.local_tier
    cloud_ok = st.cloud_configured and st.cloud_up
    cloud_state = "cloud up" if cloud_ok else ("cloud down" if st.cloud_configured else "no cloud configured")
    fit = (f"tier {req.task_tier} within local tier {st.local_tier}" if within_tier
           else f"tier {req.task_tier} above local tier {st.local_tier}")
    why_not_local = "; ".join(blockers) if blockers else fit

    def local(reason: str, *, with_cloud_fallback: bool = True) -> Decision:
        chain: tuple[Target, ...] = ("local", "cloud") if (with_cloud_fallback and cloud_ok) else ("local",)
        return Decision(chain, reason, capable, needs_cloud=False)

    def cloud(reason: str) -> Decision:
        chain: tuple[Target, ...] = ("cloud", "local") if capable else ("cloud",)
        return Decision(chain, reason, capable, needs_cloud=True)

    def unavailable(reason: str) -> Decision:
        return Decision((), reason, capable, needs_cloud=True)

    mode = override if override in ("local", "cloud") else None
    if mode == "local" or policy == "local-only":
        src = "override local" if mode == "local" else "policy local-only"
        if capable:
            return local(f"offload: {src}; {fit}", with_cloud_fallback=False)
        return Decision((), f"offload: {src} but {why_not_local}", False, needs_cloud=False)
    if mode == "cloud" or policy == "prefer-cloud":
        src = "override cloud" if mode == "cloud" else "policy prefer-cloud"
        if cloud_ok:
            return cloud(f"offload: {src}; {cloud_state}")
        if capable and mode != "cloud":
            return local(f"offload: {src} but {cloud_state}; local fallback ({fit})")
        return unavailable(f"offload: {src} but {cloud_state}")
    # prefer-local (the default), or override auto
    if capable and within_tier:
        return local(f"offload: stay local; {fit}; fits local context")
    if cloud_ok:
        return cloud(f"offload: to cloud; {why_not_local}")
    if capable:
        return local(f"offload: {cloud_state}; local fallback ({fit})")
    return unavailable(f"offload: needs cloud ({why_not_local}) but {cloud_state}")

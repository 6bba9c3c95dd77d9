"""The offload decision as a pure function: every branch, with its reason."""

from __future__ import annotations

import pytest

from tiergate_edge.offload import LocalState, OffloadRequest, decide

LOCAL_CAPS = frozenset({"json"})


def st(*, up: bool = True, configured: bool = True, ctx: int = 2048) -> LocalState:
    return LocalState(local_tier=0, local_context=ctx, local_capabilities=LOCAL_CAPS,
                      cloud_configured=configured, cloud_up=up, headroom=0.05)


def req(tier: int = 0, prompt: int = 100, out: int = 100, caps: frozenset[str] = frozenset()) -> OffloadRequest:
    return OffloadRequest(task_tier=tier, prompt_tokens=prompt, max_output_tokens=out, capabilities=caps)


def test_stays_local_when_tier_context_and_capabilities_fit() -> None:
    d = decide(req(), st())
    assert d.targets == ("local", "cloud")
    assert "stay local" in d.reason and not d.needs_cloud


@pytest.mark.parametrize("r, why", [
    (req(tier=2), "tier 2 above local tier 0"),
    (req(caps=frozenset({"tools"})), "local model lacks tools"),
    (req(caps=frozenset({"vision", "tools"})), "local model lacks tools,vision"),
    (req(prompt=1900, out=100), "needs 2000 tokens > local context 1945"),
])
def test_offloads_what_the_local_model_cannot_do(r: OffloadRequest, why: str) -> None:
    d = decide(r, st())
    assert d.primary == "cloud" and d.needs_cloud
    assert why in d.reason


def test_cloud_first_keeps_local_fallback_only_when_local_is_capable() -> None:
    assert decide(req(tier=2), st()).targets == ("cloud", "local")
    assert decide(req(caps=frozenset({"tools"})), st()).targets == ("cloud",)


def test_cloud_down_falls_back_to_local_when_the_task_allows() -> None:
    d = decide(req(tier=3), st(up=False))
    assert d.targets == ("local",)
    assert "cloud down" in d.reason and "local fallback" in d.reason


def test_cloud_down_and_local_incapable_is_unavailable() -> None:
    d = decide(req(caps=frozenset({"tools"})), st(up=False))
    assert d.targets == () and d.needs_cloud
    assert "needs cloud" in d.reason and "cloud down" in d.reason


def test_local_only_never_offloads() -> None:
    d = decide(req(tier=3), st(), policy="local-only")
    assert d.targets == ("local",) and "policy local-only" in d.reason
    blocked = decide(req(caps=frozenset({"tools"})), st(), policy="local-only")
    assert blocked.targets == () and not blocked.needs_cloud


def test_prefer_cloud_goes_to_cloud_even_for_easy_tasks() -> None:
    d = decide(req(), st(), policy="prefer-cloud")
    assert d.targets == ("cloud", "local") and "policy prefer-cloud" in d.reason
    down = decide(req(), st(up=False), policy="prefer-cloud")
    assert down.targets == ("local",) and "cloud down" in down.reason


def test_override_header_beats_policy() -> None:
    assert decide(req(tier=3), st(), override="local").targets == ("local",)
    assert decide(req(), st(), override="cloud").targets == ("cloud", "local")
    assert decide(req(), st(up=False), override="cloud").targets == ()
    assert decide(req(), st(), policy="prefer-cloud", override="auto").primary == "cloud"


def test_no_cloud_configured_is_reported_as_such() -> None:
    d = decide(req(tier=3), st(configured=False, up=False))
    assert d.targets == ("local",) and "no cloud configured" in d.reason


def test_headroom_is_applied_to_the_local_context() -> None:
    assert decide(req(prompt=900, out=1000), st(ctx=2048)).primary == "local"      # 1900 <= 1945
    assert decide(req(prompt=1000, out=1000), st(ctx=2048)).primary == "cloud"     # 2000 > 1945


def test_pure_same_inputs_same_decision() -> None:
    assert decide(req(tier=1), st()) == decide(req(tier=1), st())

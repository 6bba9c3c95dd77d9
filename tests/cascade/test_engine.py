"""The cascade engine's logic with small in-test answer functions (real engine, scripted models)."""

import asyncio

import pytest

from tiergate.cascade.engine import CascadeEngine, header_value, summarize
from tiergate.cascade.steps import decide
from tiergate.cascade.types import StepAnswer, StepRequest
from tiergate.config.cascades import CascadePolicy
from tiergate.errors import BudgetExceeded, UpstreamServerError

GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
BROKEN = "```python\ndef add(a, b)\n    return a + b\n```"
BODY = {"messages": [{"role": "user", "content": "Write a Python function that adds two numbers"}]}
PRICES = {"tier:0": 0.001, "tier:1": 0.01, "tier:2": 0.1, "tier:3": 1.0}


def completion(text, finish="stop"):
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}


class Scripted:
    """Answers per target; records every call (and cancellations)."""

    def __init__(self, answers, delays=None, fail=()):
        self.answers, self.delays, self.fail = answers, delays or {}, set(fail)
        self.calls: list[StepRequest] = []
        self.cancelled: list[str] = []

    async def __call__(self, step, lease):
        self.calls.append(step)
        try:
            await asyncio.sleep(self.delays.get(step.target, 0))
        except asyncio.CancelledError:
            self.cancelled.append(step.target)
            raise
        if step.target in self.fail:
            raise UpstreamServerError("boom")
        answer = self.answers[step.target]
        text, finish = answer if isinstance(answer, tuple) else (answer, "stop")
        return StepAnswer(completion(text, finish), model=f"m-{step.target}", tier=int(step.target[5:]),
                          cost_usd=PRICES[step.target], latency_ms=1.0)


class Ledger:
    """A budget guard over a remaining amount; records admits and settlements."""

    def __init__(self, remaining=10.0, max_tier=None):
        self.remaining, self.max_tier = remaining, max_tier
        self.admitted, self.settled = [], []

    def estimate(self, step):
        return PRICES.get(step.target, 0.0)

    async def admit(self, step):
        est = self.estimate(step)
        if est > self.remaining:
            raise BudgetExceeded("budget")
        self.remaining -= est
        self.admitted.append(step.target)
        return type("Lease", (), {"target": step.target, "est": est, "max_tier": self.max_tier})()

    async def settle(self, lease, answer, error):
        self.remaining += lease.est - (answer.cost_usd if answer else 0.0)
        self.settled.append((lease.target, "ok" if answer else type(error).__name__))


async def test_good_answer_stops_at_tier_0():
    model = Scripted({"tier:0": GOOD})
    out = await CascadeEngine(CascadePolicy(), model).run(BODY)
    assert [s.target for s in model.calls] == ["tier:0"]
    assert out.answer.model == "m-tier:0" and out.score.value == 1.0 and out.stop_reason == "accepted"
    assert [s.status for s in out.steps] == ["accepted"]


@pytest.mark.parametrize("weak", [("", "stop"), ("def add(a, b):\n    return", "length"), (BROKEN, "stop")])
async def test_weak_answer_escalates(weak):
    model = Scripted({"tier:0": weak, "tier:1": GOOD})
    out = await CascadeEngine(CascadePolicy(), model).run(BODY)
    assert [s.target for s in model.calls] == ["tier:0", "tier:1"]
    assert out.answer.model == "m-tier:1"
    assert [s.status for s in out.steps] == ["rejected", "accepted"]
    assert out.cost_usd == pytest.approx(0.011)


async def test_invalid_json_escalates():
    body = {"messages": [{"role": "user", "content": "user?"}], "response_format": {"type": "json_object"}}
    model = Scripted({"tier:0": "name: bob", "tier:1": '{"name": "bob"}'})
    out = await CascadeEngine(CascadePolicy(tiers=[0, 1]), model).run(body)
    assert out.steps[0].reasons == ("invalid_json",) and out.answer.model == "m-tier:1"


async def test_all_weak_returns_best_scored():
    model = Scripted({"tier:0": "", "tier:1": ("def add(a, b):", "length"), "tier:2": BROKEN})
    out = await CascadeEngine(CascadePolicy(tiers=[0, 1, 2]), model).run(BODY)
    assert len(model.calls) == 3
    assert out.answer.model == "m-tier:1"  # truncated (0.3) beats broken code (0.2) and empty (0)
    assert "no stronger step" in out.stop_reason


async def test_cost_ceiling_stops_escalation():
    model = Scripted({"tier:0": "", "tier:1": BROKEN, "tier:2": GOOD})
    guard = Ledger()
    out = await CascadeEngine(CascadePolicy(tiers=[0, 1, 2], max_cost_usd=0.05), model, guard=guard).run(BODY)
    assert [s.target for s in model.calls] == ["tier:0", "tier:1"]
    assert out.steps[-1].status == "skipped:ceiling" and "ceiling" in out.stop_reason
    assert out.answer.model == "m-tier:1"


async def test_budget_exceeded_returns_best_so_far_and_never_starts_the_step():
    model = Scripted({"tier:0": BROKEN, "tier:1": GOOD})
    guard = Ledger(remaining=0.005)
    out = await CascadeEngine(CascadePolicy(tiers=[0, 1]), model, guard=guard).run(BODY)
    assert [s.target for s in model.calls] == ["tier:0"]
    assert [s.status for s in out.steps] == ["rejected", "skipped:budget"]
    assert guard.settled == [("tier:0", "ok")] and out.answer.model == "m-tier:0"


async def test_budget_exceeded_on_first_step_raises():
    with pytest.raises(BudgetExceeded):
        await CascadeEngine(CascadePolicy(), Scripted({}), guard=Ledger(remaining=0)).run(BODY)


async def test_soft_limit_ceiling_lowers_the_top_tier():
    model = Scripted({"tier:0": BROKEN, "tier:1": BROKEN, "tier:2": GOOD})
    out = await CascadeEngine(CascadePolicy(tiers=[0, 1, 2]), model).run(BODY, max_tier=1)
    assert [s.target for s in model.calls] == ["tier:0", "tier:1"]
    assert out.answer.tier in (0, 1)


async def test_upstream_failure_escalates_and_settles():
    model = Scripted({"tier:1": GOOD}, fail={"tier:0"})
    guard = Ledger()
    out = await CascadeEngine(CascadePolicy(), model, guard=guard).run(BODY)
    assert out.steps[0].status == "error" and out.steps[0].error.startswith("UpstreamServerError")
    assert guard.settled == [("tier:0", "UpstreamServerError"), ("tier:1", "ok")]


async def test_every_step_failing_raises_the_last_error():
    with pytest.raises(UpstreamServerError):
        await CascadeEngine(CascadePolicy(tiers=[0, 1]), Scripted({}, fail={"tier:0", "tier:1"})).run(BODY)


async def test_refine_improves_the_draft_with_a_stronger_tier():
    model = Scripted({"tier:0": BROKEN, "tier:2": GOOD})
    out = await CascadeEngine(CascadePolicy(mode="refine", tiers=[0, 2]), model).run(BODY)
    assert [(s.target, s.purpose) for s in model.calls] == [("tier:0", "answer"), ("tier:2", "refine")]
    refine_prompt = model.calls[1].body["messages"][-1]["content"]
    assert BROKEN in refine_prompt and model.calls[1].body["messages"][0] == BODY["messages"][0]
    assert out.answer.model == "m-tier:2" and out.steps[1].status == "accepted"


async def test_refine_keeps_the_draft_when_the_improvement_is_worse():
    model = Scripted({"tier:0": GOOD, "tier:2": ""})
    out = await CascadeEngine(CascadePolicy(mode="refine", tiers=[0, 2]), model).run(BODY)
    assert out.steps[0].status == "draft" and out.answer.model == "m-tier:0"


async def test_refine_not_always_returns_a_good_draft():
    model = Scripted({"tier:0": GOOD, "tier:2": GOOD})
    out = await CascadeEngine(CascadePolicy(mode="refine", tiers=[0, 2], refine_always=False), model).run(BODY)
    assert len(model.calls) == 1 and out.answer.model == "m-tier:0"


async def test_parallel_first_acceptable_wins_and_the_rest_are_cancelled():
    model = Scripted({"tier:0": BROKEN, "tier:1": GOOD, "tier:2": GOOD, "tier:3": GOOD},
                     delays={"tier:0": 0.0, "tier:1": 0.02, "tier:2": 5, "tier:3": 5})
    guard = Ledger()
    out = await CascadeEngine(CascadePolicy(mode="parallel"), model, guard=guard).run(BODY)
    assert out.answer.model == "m-tier:1"
    assert sorted(model.cancelled) == ["tier:2", "tier:3"]
    statuses = {s.target: s.status for s in out.steps}
    assert statuses == {"tier:0": "rejected", "tier:1": "accepted", "tier:2": "cancelled", "tier:3": "cancelled"}
    # cancelled steps were settled too (reservations released)
    assert sorted(guard.settled) == [("tier:0", "ok"), ("tier:1", "ok"),
                                     ("tier:2", "CancelledError"), ("tier:3", "CancelledError")]


async def test_parallel_best_when_none_acceptable():
    model = Scripted({"tier:0": "", "tier:1": BROKEN}, delays={"tier:0": 0.01})
    out = await CascadeEngine(CascadePolicy(mode="parallel", tiers=[0, 1]), model).run(BODY)
    assert out.answer.model == "m-tier:1" and not model.cancelled


async def test_judge_blends_into_the_score():
    policy = CascadePolicy(tiers=[0, 1], judge={"model": "tier:2", "weight": 0.5})

    async def answer(step, lease):
        text = "3" if step.purpose == "judge" else "Paris is the capital."
        return StepAnswer(completion(text), model=step.target, tier=int(step.target[5:]),
                          cost_usd=0.001, latency_ms=1)

    out = await CascadeEngine(policy, answer).run({"messages": [{"role": "user", "content": "Capital of France?"}]})
    assert out.steps[0].score == pytest.approx(0.65) and "judge:3/10" in out.steps[0].reasons
    assert [s.status for s in out.steps] == ["rejected", "rejected"]
    assert out.cost_usd == pytest.approx(0.004)  # two answers + two verdicts


def test_decide_is_the_shared_decision():
    p = CascadePolicy(tiers=[0, 1, 2], thresholds={"coding": 0.9}, max_cost_usd=0.1)
    t = p.targets()
    assert decide(p, task_type="general", score=0.75, index=0, targets=t).action == "accept"
    d = decide(p, task_type="coding", score=0.75, index=0, targets=t)
    assert (d.action, d.next_target) == ("escalate", "tier:1")
    assert decide(p, task_type=None, score=0.1, index=2, targets=t).action == "stop"
    assert decide(p, task_type=None, score=0.1, index=0, targets=t, spent_usd=0.05,
                  next_estimate_usd=0.06).action == "stop"


async def test_summary_and_header():
    out = await CascadeEngine(CascadePolicy(), Scripted({"tier:0": "", "tier:1": GOOD})).run(BODY)
    ext = summarize(out)
    assert [s["status"] for s in ext["steps"]] == ["rejected", "accepted"] and ext["final"]["tier"] == 1
    assert header_value(out) == "escalate;0:m-tier:0=0.00:rejected;1:m-tier:1=1.00:accepted;cost=0.011000"


def test_policy_validation():
    with pytest.raises(ValueError):
        CascadePolicy(mode="refine", tiers=[0])
    with pytest.raises(ValueError):
        CascadePolicy(refine_prompt="no placeholder")
    with pytest.raises(ValueError):
        CascadePolicy(unknown=1)
    assert CascadePolicy(models=["a", "tier:2"]).targets() == ("a", "tier:2")


async def test_soft_limited_lease_lowers_the_ceiling_mid_cascade():
    model = Scripted({"tier:0": BROKEN, "tier:1": BROKEN, "tier:2": GOOD, "tier:3": GOOD})
    out = await CascadeEngine(CascadePolicy(), model, guard=Ledger(max_tier=1)).run(BODY)
    assert [s.target for s in model.calls] == ["tier:0", "tier:1"]
    assert [s.status for s in out.steps] == ["rejected", "rejected"]


async def test_stop_reason_names_the_failed_step_and_the_answer_kept():
    # Finding 6: a cascade whose last step failed said "score 0.00 < 0.70" though the
    # answer it kept had scored 0.30.
    body = {"messages": [{"role": "user", "content": "Tell me about the tides"}]}
    cut = ("Tides are caused by the", "length")
    out = await CascadeEngine(CascadePolicy(tiers=[0, 1]), Scripted({"tier:0": cut}, fail={"tier:1"})).run(body)
    assert out.answer.model == "m-tier:0" and out.score.value == 0.3
    assert out.stop_reason == ("step 1 (tier:1) failed with UpstreamServerError; no stronger step left; "
                               "kept step 0 (tier:0, score 0.30)")
    weak = await CascadeEngine(CascadePolicy(tiers=[0, 1]), Scripted({"tier:0": cut, "tier:1": ""})).run(body)
    assert weak.stop_reason == "score 0.00 < 0.70 and no stronger step left; kept step 0 (tier:0, score 0.30)"

"""bench/cascade: how often the cascade escalates, what it costs, how fast the scorer is.

    python bench/cascade/run.py [--repeat 2000]

Runs the real engine (escalate, tiers 0-1-2, threshold 0.7) over ``dataset.ITEMS``: tier 0
answers with the item's cheap answer, tiers 1 and 2 with a correct one. Reports the
fraction escalated, agreement with the labels, cost relative to always using the top
tier (prices per 1M tokens below, tokens ~ chars/4), and the deterministic scorer's time
per answer (median and p99 over ``--repeat`` timed calls per item).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataset import ITEMS  # noqa: E402

from tiergate.cascade import scoring  # noqa: E402
from tiergate.cascade.engine import CascadeEngine  # noqa: E402
from tiergate.cascade.types import StepAnswer  # noqa: E402
from tiergate.config.cascades import CascadePolicy  # noqa: E402

PRICES = {0: (0.1, 0.4), 1: (1.0, 4.0), 2: (10.0, 40.0)}  # $ per 1M input / output tokens
# Varied prose: the scorer rejects a sentence looped four times as degenerate repetition.
GOOD_UPPER = ("A correct and complete answer from a stronger model: it names the cause, walks through each step "
              "of the reasoning, gives a worked example, and ends with the caveats a careful reader should know.")


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


def cost(tier: int, prompt: str, answer: str) -> float:
    pin, pout = PRICES[tier]
    return (tokens(prompt) * pin + tokens(answer) * pout) / 1e6


def completion(text: str, finish: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]}


async def run_engine() -> tuple[int, int, float, float]:
    escalated = agree = 0
    spent = top = 0.0
    engine_policy = CascadePolicy(tiers=[0, 1, 2], threshold=0.7)
    for prompt, extra, cheap, finish, label in ITEMS:
        body = {"messages": [{"role": "user", "content": prompt}], **extra}

        async def answer(step, lease, cheap=cheap, finish=finish, prompt=prompt, body=body):
            tier = int(step.target[5:])
            text, fin = (cheap, finish) if tier == 0 else (_good_for(body), "stop")
            return StepAnswer(completion(text, fin), model=f"t{tier}", tier=tier,
                              cost_usd=cost(tier, prompt, text), latency_ms=0.0)

        out = await CascadeEngine(engine_policy, answer).run(body)
        went_up = len([s for s in out.steps if s.status != "skipped:ceiling"]) > 1
        escalated += went_up
        agree += went_up == (label == "bad")
        spent += out.cost_usd
        top += cost(2, prompt, _good_for(body))
    return escalated, agree, spent, top


def _good_for(body: dict) -> str:
    exp = scoring.expectations(body)
    if exp.json:
        return '{"answer": "ok"}'
    if exp.code:
        return "```python\ndef solution():\n    return 42\n```" if exp.code_lang in (None, "python") else "```\n{ ok(); }\n```"
    if exp.items:
        return "\n".join(f"{i + 1}. item" for i in range(exp.items))
    if exp.list_:
        return "- a\n- b\n- c"
    return GOOD_UPPER


def time_scorer(repeat: int) -> list[float]:
    per_answer_us: list[float] = []
    prepared = [(scoring.expectations({"messages": [{"role": "user", "content": p}], **x}), completion(a, f))
                for p, x, a, f, _ in ITEMS]
    for exp, resp in prepared:
        for _ in range(repeat):
            t = time.perf_counter_ns()
            scoring.score_response(exp, resp)
            per_answer_us.append((time.perf_counter_ns() - t) / 1000)
    return per_answer_us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    escalated, agree, spent, top = asyncio.run(run_engine())
    n = len(ITEMS)
    times = sorted(time_scorer(args.repeat))
    p99 = times[int(len(times) * 0.99) - 1]
    t = time.perf_counter_ns()
    for p, x, _, _, _ in ITEMS:
        scoring.expectations({"messages": [{"role": "user", "content": p}], **x})
    exp_us = (time.perf_counter_ns() - t) / 1000 / n
    print(f"items                      {n} ({sum(1 for i in ITEMS if i[4] == 'bad')} bad cheap answers)")
    print(f"fraction escalated         {escalated / n:.3f}")
    print(f"decisions matching labels  {agree}/{n} ({agree / n:.1%})")
    print(f"cost vs always top tier    {spent / top:.3f}  (${spent:.6f} vs ${top:.6f})")
    print(f"scorer per answer (us)     median {statistics.median(times):.1f}  p99 {p99:.1f}  max {times[-1]:.1f}"
          f"  ({len(times)} timed calls)")
    print(f"expectations per request   {exp_us:.1f} us (once per request)")


if __name__ == "__main__":
    main()

"""Learned routing benchmark: train on half of a labeled set, measure on the other half.

For each data set: the learned router at ``--target`` (quality relative to always-best,
cost relative to always-best, savings), the rules router (today's keyword ``auto``), a
random split at the learned router's mix and at the rules' mix, the cascade with the
learned scorer (when the set has answers), calibration (target vs achieved on the
held-out half), and in-process decision latency (features + predictions + choice) p50/p99
on a ~2,000-token prompt, scorer p50, artifact size. Medians, p99 and ratios are
printed side by side in one run; figures from different runs are not comparable.

    python bench/routing/run.py                                  # mtbench-dev (+ the local set if made)
    python bench/routing/run.py --data X.jsonl --config X.yaml   # any set in the training shape
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "edge")]

from tiergate.config.catalog import load  # noqa: E402
from tiergate.limits.admission import Principal  # noqa: E402
from tiergate.request import GatewayRequest  # noqa: E402
from tiergate.routing.learned import artifact as art  # noqa: E402
from tiergate.routing.learned import train as trainer  # noqa: E402
from tiergate.routing.learned.data import read  # noqa: E402
from tiergate.routing.learned.model import ALWAYS_REFERENCE, cascade_pick, choose  # noqa: E402
from tiergate.routing.plan import Router  # noqa: E402
from tiergate.tokens import prompt_tokens, text_tokens  # noqa: E402

MTBENCH = ROOT.parent.parent / "shared" / "data" / "routing" / "mtbench-dev.jsonl"
#: Made by make_local_dataset.py (800 generated tasks, two real local models, graded by checkers).
LOCAL = HERE / "data" / "local-pair.jsonl"
SETS = [(MTBENCH, HERE / "mtbench.yaml"), (LOCAL, HERE / "local-pair.yaml")]


def split(examples, seed: int = 1):
    """Half for training, half for evaluation; turns of one conversation stay together."""
    def group(ex) -> str:
        first = next((m.get("content") for m in ex.messages if m.get("role") == "user"), "")
        return hashlib.sha1(str(first).encode()).hexdigest()
    groups = sorted({group(e) for e in examples})
    random.Random(seed).shuffle(groups)
    train_g = set(groups[: len(groups) // 2])
    return [e for e in examples if group(e) in train_g], [e for e in examples if group(e) not in train_g]


def costs_of(ex, models, catalog, out_tokens) -> dict[str, float]:
    p = prompt_tokens(ex.messages)
    out = {}
    for m in models:
        o = text_tokens(ex.answers[m]) if m in ex.answers else out_tokens.get(m, 256)
        out[m] = catalog.groups[m][0].cost_usd(p, int(o))
    return out


def evaluate(a: art.Artifact, test, catalog, target: float) -> dict:
    models = list(a.models)
    ref = a.reference
    rows = [e for e in test if all(m in e.outcomes for m in models)]
    base_q = statistics.mean(e.outcomes[ref] for e in rows)
    costs = [costs_of(e, models, catalog, a.output_tokens) for e in rows]
    base_c = sum(c[ref] for c in costs)
    mean_q = {m: statistics.mean(e.outcomes[m] for e in rows) for m in models}
    mean_c = {m: statistics.mean(c[m] for c in costs) for m in models}

    def summary(choice: list[str]) -> dict:
        q = statistics.mean(e.outcomes[m] for e, m in zip(rows, choice, strict=True)) / base_q
        c = sum(cc[m] for cc, m in zip(costs, choice, strict=True)) / base_c
        share = {m: choice.count(m) / len(choice) for m in models}
        rq = sum(share[m] * mean_q[m] for m in models) / base_q
        rc = sum(share[m] * mean_c[m] for m in models) / mean_c[ref]
        return {"quality": q, "cost": c, "share": share, "random_quality": rq, "random_cost": rc}

    preds = [a.predict(e.messages) for e in rows]

    def learned(t: float) -> list[str]:
        margin = a.margin(t)
        return [choose(p, c, ALWAYS_REFERENCE if margin is None else margin, ref) for p, c in zip(preds, costs, strict=True)]

    router = Router(catalog)
    rules = []
    for e in rows:
        req = GatewayRequest.from_chat({"model": "auto", "messages": e.messages}, aliases={}, default_model="auto")
        plan = router.plan(req, Principal("bench", is_master=True))
        rules.append(next((c.name for c in plan.candidates if c.name in models), ref))
    out = {"n": len(rows), "reference": ref, "learned": summary(learned(target)), "rules": summary(rules),
           "calibration": [(t, summary(learned(t))["quality"]) for t in (0.85, 0.9, 0.95, 0.975)]}
    if a.scorer is not None and a.scorer_curve is not None:
        order = sorted(models, key=lambda m: mean_c[m])
        th = a.threshold(target)
        th = 1.01 if th is None else th
        qs, cs = [], []
        for e, c in zip(rows, costs, strict=True):
            if not all(m in e.answers for m in order):
                continue
            scores = [a.score(e.messages, e.answers[m], m) or 0.0 for m in order]
            pick, ran = cascade_pick(scores, th)
            qs.append(e.outcomes[order[pick]])
            cs.append(sum(c[m] for m in order[:ran]))
        if qs:
            out["cascade"] = {"quality": statistics.mean(qs) / base_q, "cost": sum(cs) / base_c, "n": len(qs)}
    return out


def latency(a: art.Artifact, reps: int) -> dict:
    words = ("the integral of a function over an interval measures the signed area under its curve and "
             "can be evaluated with the fundamental theorem of calculus when an antiderivative exists ").split()
    rng = random.Random(0)
    text = " ".join(rng.choice(words) for _ in range(1500)) + " What is the integral of x^2 from 0 to 3?"
    msgs = [{"role": "user", "content": text}]
    toks = text_tokens(text)
    costs = {m: float(i) for i, m in enumerate(a.models)}
    margin = a.margin(0.95)
    decide, score = [], []
    for i in range(reps + 20):
        t0 = time.perf_counter()
        choose(a.predict(msgs), costs, ALWAYS_REFERENCE if margin is None else margin, a.reference)
        t1 = time.perf_counter()
        if a.scorer is not None:
            a.score(msgs, "Therefore the answer is 9.", a.models[0])
        t2 = time.perf_counter()
        if i >= 20:
            decide.append((t1 - t0) * 1000)
            score.append((t2 - t1) * 1000)
    decide.sort()
    score.sort()
    return {"prompt_tokens": toks, "p50": decide[len(decide) // 2], "p99": decide[int(len(decide) * 0.99)],
            "scorer_p50": score[len(score) // 2] if a.scorer is not None else None}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, action="append")
    ap.add_argument("--config", type=Path, action="append")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--synthetic", type=int, default=2000,
                    help="also run on N generated examples (tests/support/routing_data.py: outcomes drawn from "
                         "made-up per-topic rates; a plumbing and calibration check, not evidence); 0 to skip")
    args = ap.parse_args()
    sets = list(zip(args.data, args.config, strict=True)) if args.data else [s for s in SETS if s[0].exists()]
    if args.synthetic and not args.data:
        sys.path.insert(0, str(ROOT))
        from tests.support import routing_data

        tmp = Path(tempfile.mkdtemp())
        cat = tmp / "synthetic.yaml"
        cat.write_text(routing_data.CATALOG.replace("{sim}", "http://127.0.0.1:9/v1"))
        sets.append((routing_data.write(tmp / "synthetic.jsonl", args.synthetic, seed=11), cat))
    for data, config in sets:
        catalog = load(config)
        examples, _ = read([data])
        train, test = split(examples)
        with tempfile.TemporaryDirectory() as d:
            lines: list[str] = []
            trainer.train(train, catalog, Path(d), quality_target=args.target, report=lines.append)
            a = art.load(d)
            size = sum(f.stat().st_size for f in Path(d).iterdir())
            r = evaluate(a, test, catalog, args.target)
            lat = latency(a, args.reps)
        print(f"\n== {data.name}: train {len(train)} / evaluate {r['n']} (held-out half); reference {r['reference']}; "
              f"target {args.target}")
        print(f"{'router':<26} {'quality':>8} {'cost':>7} {'saves':>7}   share")
        for name in ("learned", "rules"):
            s = r[name]
            share = ", ".join(f"{m} {v:.0%}" for m, v in s["share"].items())
            print(f"{name:<26} {s['quality']:>8.3f} {s['cost']:>7.3f} {1 - s['cost']:>7.1%}   {share}")
            print(f"{'  random, same mix':<26} {s['random_quality']:>8.3f} {s['random_cost']:>7.3f} "
                  f"{1 - s['random_cost']:>7.1%}")
        if "cascade" in r:
            c = r["cascade"]
            print(f"{'cascade, learned scorer':<26} {c['quality']:>8.3f} {c['cost']:>7.3f} {1 - c['cost']:>7.1%}"
                  f"   ({c['n']} with answers)")
        print("calibration (target -> achieved on held-out): "
              + ", ".join(f"{t:.3f} -> {q:.3f}" for t, q in r["calibration"]))
        sp = f", scorer p50 {lat['scorer_p50']:.3f} ms" if lat["scorer_p50"] is not None else ""
        print(f"decision on a {lat['prompt_tokens']}-token prompt: p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms"
              f"{sp}; artifact {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

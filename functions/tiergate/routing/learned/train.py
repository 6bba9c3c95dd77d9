"""Training the router and the answer scorer (``tiergate router train``).

The only module that imports numpy and scipy (the ``train`` extra); the CLI imports it,
nothing on the serving path does. Features come from the same pure-Python functions the
gateway runs (:mod:`tiergate.routing.learned.features`), so training and serving agree.

1. One L2-regularized logistic regression per model (soft labels: a judge's 0.8 is a
   target of 0.8) over idf-weighted binary features; its strength chosen by K-fold
   log-loss.
2. K-fold cross-fitting gives every example an *out-of-fold* prediction (a model that
   did not see it); folds group turns of one conversation, so a turn-2 prompt never
   leaks its turn 1. Calibration sweeps the routing rule (:func:`model.choose`) over
   those held-out predictions and records, per quality target, the cheapest margin whose
   achieved quality (and every stricter margin's) reached it.
3. With answers, the scorer (prompt + answer -> quality) is fitted and calibrated the same
   way against the cascade rule (:func:`model.cascade_pick`).
4. The final models are refitted on all the data; the artifact is written by
   :func:`tiergate.routing.learned.artifact.save`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, sparse, special

from tiergate.config.catalog import Catalog
from tiergate.routing.learned import artifact as art
from tiergate.routing.learned.data import Example, check_models
from tiergate.routing.learned.features import answer_features, request_features, split_messages
from tiergate.routing.learned.model import ALWAYS_REFERENCE, GAIN, cascade_pick, relative_quality
from tiergate.tokens import prompt_tokens, text_tokens

C_GRID = (0.25, 1.0, 4.0, 16.0)
TARGETS = tuple(round(0.5 + 0.005 * i, 3) for i in range(101))
REPORT_TARGETS = (0.85, 0.90, 0.95, 0.975, 0.99, 1.0)
DEFAULT_OUTPUT_TOKENS = 256
MAX_FEATURES = 60_000


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def __call__(self, line: str = "") -> None:
        self.lines.append(line)


# --- numbers ----------------------------------------------------------------------------


def vocabulary(rows: Sequence[set[str]], *, min_df: int, max_features: int = MAX_FEATURES
               ) -> tuple[list[str], np.ndarray]:
    df: dict[str, int] = {}
    for feats in rows:
        for f in feats:
            df[f] = df.get(f, 0) + 1
    kept = sorted((f for f, c in df.items() if c >= min_df), key=lambda f: (-df[f], f))[:max_features]
    n = len(rows)
    idf = np.array([np.log((1 + n) / (1 + df[f])) + 1.0 for f in kept])
    return kept, idf


def matrix(rows: Sequence[set[str]], vocab: Sequence[str], idf: np.ndarray) -> sparse.csr_matrix:
    """Rows as the serving model sees them: idf-weighted binary features, L2-normalized."""
    index = {f: i for i, f in enumerate(vocab)}
    indptr, cols = [0], []
    for feats in rows:
        cols.extend(sorted(i for i in map(index.get, feats) if i is not None))
        indptr.append(len(cols))
    col = np.array(cols, dtype=np.int64)
    data = idf[col] if len(col) else np.zeros(0)
    m = sparse.csr_matrix((data, col, np.array(indptr)), shape=(len(rows), len(vocab)))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms) @ m


def fit_logistic(x: sparse.csr_matrix, y: np.ndarray, c: float) -> tuple[float, np.ndarray]:
    """min sum(logloss) + ||w||^2 / (2C), bias unpenalized; soft labels allowed."""
    d = x.shape[1]
    prior = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    theta0 = np.zeros(d + 1)
    theta0[-1] = np.log(prior / (1 - prior))

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        z = x @ w + b
        loss = float(np.sum(np.logaddexp(0.0, z) - y * z) + w @ w / (2 * c))
        r = special.expit(z) - y
        return loss, np.concatenate([x.T @ r + w / c, [r.sum()]])

    def hessp(theta: np.ndarray, v: np.ndarray) -> np.ndarray:
        p = special.expit(x @ theta[:-1] + theta[-1])
        d = p * (1 - p) * (x @ v[:-1] + v[-1])
        return np.concatenate([x.T @ d + v[:-1] / c, [d.sum()]])

    # Newton-CG: a handful of outer steps, each a few sparse products (L-BFGS-B's
    # bookkeeping per iteration dominates on tens of thousands of features).
    res = optimize.minimize(f, theta0, jac=True, hessp=hessp, method="Newton-CG",
                            options={"maxiter": 60, "xtol": 1e-6})
    return float(res.x[-1]), res.x[:-1]


def predict(x: sparse.csr_matrix, b: float, w: np.ndarray) -> np.ndarray:
    return special.expit(x @ w + b)


def folds_of(groups: Sequence[str], k: int, seed: int) -> np.ndarray:
    """A fold per example; examples of one group (conversation) share a fold."""
    uniq = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold_of = {uniq[j]: i % k for i, j in enumerate(order)}
    return np.array([fold_of[g] for g in groups])


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def cross_fit(x: sparse.csr_matrix, y: np.ndarray, folds: np.ndarray, grid: Sequence[float] = C_GRID
              ) -> tuple[float, np.ndarray]:
    """(best C by out-of-fold log-loss, the out-of-fold predictions at that C)."""
    best: tuple[float, float, np.ndarray] | None = None
    for c in grid:
        oof = np.zeros(len(y))
        for f in np.unique(folds):
            tr, te = folds != f, folds == f
            if tr.sum() == 0 or te.sum() == 0:
                continue
            b, w = fit_logistic(x[tr], y[tr], c)
            oof[te] = predict(x[te], b, w)
        loss = logloss(y, oof)
        if best is None or loss < best[0] - 1e-9:
            best = (loss, c, oof)
    assert best is not None
    return best[1], best[2]


# --- calibration -----------------------------------------------------------------------------


def route_all(p: np.ndarray, cost: np.ndarray, models: Sequence[str], margin: float, reference: int) -> np.ndarray:
    """:func:`model.choose` for every row at once (the index of the chosen model); the
    tests check it against ``choose`` itself."""
    if margin < 0:
        return np.full(len(p), reference)
    ok = p >= p.max(axis=1, keepdims=True) - margin - 1e-12
    masked = np.where(ok, cost, np.inf)
    cand = ok & (masked == masked.min(axis=1, keepdims=True))
    return np.argmax(np.where(cand, p, -np.inf), axis=1)


def route_sweep(p: np.ndarray, y: np.ndarray, cost: np.ndarray, models: Sequence[str], reference: int
                ) -> list[tuple[float, float, float, np.ndarray]]:
    """(margin, quality rel. to always-reference, cost rel., choices) for a grid of margins."""
    base_q, base_c = y[:, reference].mean(), cost[:, reference].sum()
    gaps = (p.max(axis=1, keepdims=True) - p).ravel()
    grid = np.unique(np.concatenate([[0.0], np.quantile(gaps, np.linspace(0, 1, 301)), [gaps.max() + 1e-6]]))
    out = []
    idx = np.arange(len(y))
    for margin in [ALWAYS_REFERENCE, *grid.tolist()]:
        ch = route_all(p, cost, models, float(margin), reference)
        out.append((float(margin), float(y[idx, ch].mean() / base_q) if base_q else 1.0,
                    float(cost[idx, ch].sum() / base_c) if base_c else 1.0, ch))
    return out


def decreasing_fit(q: Sequence[float]) -> list[float]:
    """The best non-increasing fit to ``q`` (least squares; pool adjacent violators)."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in q:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
            s_, c = blocks.pop()
            blocks[-1][0] += s_
            blocks[-1][1] += c
    out: list[float] = []
    for s_, c in blocks:
        out += [s_ / c] * int(c)
    return out


def curve_from_sweep(sweep: Sequence[tuple[float, float, float, Any]], *, higher_is_stricter: bool
                     ) -> list[tuple[float, float]]:
    """Per target, the loosest operating point whose quality reaches it, on the best
    monotone fit of held-out quality against strictness (looser never does better in
    expectation, so a noisy bump past a dip is not taken, and one dip does not forbid
    everything looser either)."""
    ordered = sorted(sweep, key=lambda s: s[0], reverse=higher_is_stricter)  # strictest first
    fit = decreasing_fit([q for _, q, _, _ in ordered])
    points = []
    for t in TARGETS:
        ok = [i for i, f in enumerate(fit) if f + 1e-9 >= t]
        if ok:
            points.append((t, ordered[ok[-1]][0]))
    return points


def cascade_sweep(s: np.ndarray, y: np.ndarray, cost: np.ndarray, base_q: float, base_c: float
                  ) -> list[tuple[float, float, float, np.ndarray]]:
    """(threshold, quality rel., cost rel., picks) of the cascade rule over a threshold grid."""
    grid = np.unique(np.concatenate([[0.0], np.quantile(s[:, :-1].ravel(), np.linspace(0, 1, 201)), [1.01]]))
    out = []
    idx = np.arange(len(y))
    for th in grid.tolist():
        picks = [cascade_pick(list(row), th) for row in s]
        ans = np.array([a for a, _ in picks])
        spent = np.array([cost[i, :n].sum() for i, (_, n) in enumerate(picks)])
        out.append((float(th), float(y[idx, ans].mean() / base_q) if base_q else 1.0,
                    float(spent.sum() / base_c) if base_c else 1.0, ans))
    return out


# --- the whole job ---------------------------------------------------------------------------


def _group(ex: Example) -> str:
    first = next((m.get("content") for m in ex.messages if m.get("role") == "user"), "")
    return hashlib.sha1(str(first).encode()).hexdigest()


def _costs(examples: Sequence[Example], models: Sequence[str], catalog: Catalog) -> tuple[np.ndarray, dict[str, float]]:
    specs = {m: catalog.groups[m][0] for m in models}
    out_tokens: dict[str, float] = {}
    for m in models:
        lens = [text_tokens(ex.answers[m]) for ex in examples if m in ex.answers]
        out_tokens[m] = float(np.mean(lens)) if lens else float(DEFAULT_OUTPUT_TOKENS)
    cost = np.zeros((len(examples), len(models)))
    for i, ex in enumerate(examples):
        p = prompt_tokens(ex.messages)
        for j, m in enumerate(models):
            o = text_tokens(ex.answers[m]) if m in ex.answers else out_tokens[m]
            cost[i, j] = specs[m].cost_usd(p, int(round(o)))
    return cost, out_tokens


def train(examples: Sequence[Example], catalog: Catalog, out: Path, *, quality_target: float = 0.95,
          k: int = 5, seed: int = 0, data_sha256: str = "", sources: Sequence[str] = (),
          report: Callable[[str], None] = print, plot: Path | None = None) -> dict[str, Any]:
    """Train, calibrate, write the artifact to ``out``; returns the manifest written."""
    started = time.time()
    models = check_models(examples, (m.name for m in catalog.models))
    full = [ex for ex in examples if all(m in ex.outcomes for m in models)]
    if len(full) < 10:
        raise ValueError(f"only {len(full)} examples have outcomes for every model ({', '.join(models)}); "
                         "calibration needs at least 10")
    k = max(2, min(k, len(full) // 5))
    feats = [request_features(ex.messages) for ex in full]
    vocab, idf = vocabulary(feats, min_df=2 if len(full) >= 50 else 1)
    x = matrix(feats, vocab, idf)
    y = np.array([[ex.outcomes[m] for m in models] for ex in full])
    cost, out_tokens = _costs(full, models, catalog)
    folds = folds_of([_group(ex) for ex in full], k, seed)
    reference = int(np.argmax(y.mean(axis=0)))
    oof = np.zeros_like(y)
    outputs: dict[str, tuple[float, np.ndarray]] = {}
    cs: dict[str, float] = {}
    for j, m in enumerate(models):
        cs[m], oof[:, j] = cross_fit(x, y[:, j], folds)
        outputs[m] = fit_logistic(x, y[:, j], cs[m])
    # The relative form: each other model's shortfall against the reference, learned
    # directly ((y_ref - y_m + 1) / 2 as a soft label) instead of as a difference of two
    # independent fits. Both forms are calibrated on out-of-fold predictions and the one
    # cheaper at the target on that held-out data is kept.
    rel_oof = oof.copy()
    rel_outputs = {models[reference]: outputs[models[reference]]}
    for j, m in enumerate(models):
        if j == reference:
            continue
        z = (y[:, reference] - y[:, j] + 1) / 2
        c, p = cross_fit(x, z, folds)
        cs[GAIN + m] = c
        rel_oof[:, j] = relative_quality(oof[:, reference], p)
        rel_outputs[GAIN + m] = fit_logistic(x, z, c)
    forms = {}
    for form, o in (("absolute", oof), ("relative", rel_oof)):
        sw = route_sweep(o, y, cost, models, reference)
        cv = curve_from_sweep(sw, higher_is_stricter=False)
        at = _at(sw, cv, quality_target)
        forms[form] = (at[2] if at is not None else 1.0, sw, cv, o)
    form = min(forms, key=lambda f: (forms[f][0], f != "absolute"))
    _, sweep, router_curve, oof = forms[form]
    if form == "relative":
        outputs = rel_outputs
    report(f"router form: {form} (out-of-fold cost at target {quality_target}: "
           + ", ".join(f"{f} {v[0]:.3f}" for f, v in forms.items()) + ")")

    scorer_payload = None
    scorer_curve: list[tuple[float, float]] | None = None
    cascade_models = [m for m in models if all(m in ex.answers for ex in full)]
    cascade_models.sort(key=lambda m: cost[:, models.index(m)].mean())
    scorer_info: dict[str, Any] | None = None
    casc: list[tuple[float, float, float, np.ndarray]] = []
    if len(cascade_models) >= 2:
        pairs = [(i, m) for i in range(len(full)) for m in cascade_models]
        afeats = [answer_features(feats[i], split_messages(full[i].messages)[0], full[i].answers[m], m)
                  for i, m in pairs]
        avocab, aidf = vocabulary(afeats, min_df=2 if len(full) >= 50 else 1)
        ax = matrix(afeats, avocab, aidf)
        ay = np.array([full[i].outcomes[m] for i, m in pairs])
        pf = np.array([folds[i] for i, _ in pairs])
        c_s, a_oof = cross_fit(ax, ay, pf)
        sb, sw = fit_logistic(ax, ay, c_s)
        scorer_payload = art.model_payload(avocab, aidf, {"quality": (sb, sw)})
        s = a_oof.reshape(len(full), len(cascade_models))
        cols = [models.index(m) for m in cascade_models]
        casc = cascade_sweep(s, y[:, cols], cost[:, cols], y[:, reference].mean(), cost[:, reference].sum())
        scorer_curve = curve_from_sweep(casc, higher_is_stricter=True)
        scorer_info = {"models": cascade_models, "C": c_s, "features": len(avocab),
                       "oof_logloss": logloss(ay, a_oof), "auc": _auc(ay, a_oof)}

    metrics = _metrics(models, y, oof, cost, reference, sweep, casc, quality_target)
    _table(report, models, y, cost, reference, sweep, router_curve, casc, scorer_curve, quality_target, len(full), k)
    manifest = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": list(models), "reference_model": models[reference], "quality_target": quality_target,
        "router_form": form,
        "output_tokens": {m: round(v, 1) for m, v in out_tokens.items()},
        "feature_spec": {"kind": "hashed-free vocabulary: words, word bigrams, shape buckets (features.py)",
                         "router_features": len(vocab), "router_form": form, "scorer": scorer_info},
        "training": {"files": list(sources), "data_sha256": data_sha256, "examples": len(examples),
                     "examples_with_every_outcome": len(full), "folds": k, "seed": seed,
                     "regularization_C": cs, "seconds": round(time.time() - started, 1)},
        "metrics": metrics,
        "calibration": {"router": router_curve, "scorer": scorer_curve,
                        "note": "value per target: router margin (ALWAYS_REFERENCE = -1: the reference model), "
                                "scorer accept threshold; measured on out-of-fold predictions"},
    }
    art.save(out, manifest, art.model_payload(vocab, idf, outputs), scorer_payload)
    if plot is not None:
        _plot(plot, sweep, casc, models, y, cost, reference)
    return art.load(out).manifest


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    pos, neg = s[y >= 0.5], s[y < 0.5]
    if not len(pos) or not len(neg):
        return None
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]))) + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _at(sweep: Sequence[tuple[float, float, float, Any]], curve: Sequence[tuple[float, float]], target: float
        ) -> tuple[float, float, float, Any] | None:
    value = next((v for t, v in curve if t >= target - 1e-9), None)
    if value is None:
        return None
    return next(s for s in sweep if s[0] == value)


def _random_same_mix(ch: np.ndarray, y: np.ndarray, cost: np.ndarray, reference: int) -> tuple[float, float]:
    share = np.bincount(ch, minlength=y.shape[1]) / len(ch)
    q = float(share @ y.mean(axis=0) / y[:, reference].mean())
    c = float(share @ cost.mean(axis=0) / cost[:, reference].mean())
    return q, c


def _metrics(models: Sequence[str], y: np.ndarray, oof: np.ndarray, cost: np.ndarray, reference: int,
             sweep: Any, casc: Any, target: float) -> dict[str, Any]:
    m: dict[str, Any] = {"mean_outcome": {mm: round(float(v), 4) for mm, v in zip(models, y.mean(axis=0), strict=True)},
                         "oof_logloss": {mm: round(logloss(y[:, j], oof[:, j]), 4) for j, mm in enumerate(models)},
                         "oof_auc": {mm: _auc(y[:, j], oof[:, j]) for j, mm in enumerate(models)}}
    curve = curve_from_sweep(sweep, higher_is_stricter=False)
    at = _at(sweep, curve, target)
    if at is not None:
        rq, rc = _random_same_mix(at[3], y, cost, reference)
        m["at_target"] = {"target": target, "quality": round(at[1], 4), "cost": round(at[2], 4),
                          "random_same_mix_quality": round(rq, 4), "random_same_mix_cost": round(rc, 4),
                          "share": {mm: round(float(np.mean(at[3] == j)), 4) for j, mm in enumerate(models)}}
    if casc:
        cat = _at(casc, curve_from_sweep(casc, higher_is_stricter=True), target)
        if cat is not None:
            m["cascade_at_target"] = {"target": target, "quality": round(cat[1], 4), "cost": round(cat[2], 4)}
    return m


def _table(report: Callable[[str], None], models: Sequence[str], y: np.ndarray, cost: np.ndarray, reference: int,
           sweep: Any, curve: Any, casc: Any, scurve: Any, target: float, n: int, k: int) -> None:
    ref = models[reference]
    report(f"{n} examples, {k}-fold out-of-fold predictions; reference (always-best) model: {ref}")
    report("mean outcome: " + ", ".join(f"{m} {v:.3f}" for m, v in zip(models, y.mean(axis=0), strict=True)))
    head = "target | " + " | ".join(f"share {m}" for m in models) + " | quality | cost | random quality | random cost"
    if casc:
        head += " | cascade quality | cascade cost"
    report(head)
    for t in sorted({*REPORT_TARGETS, target}):
        at = _at(sweep, curve, t)
        if at is None:
            report(f"{t:.3f} | not reached")
            continue
        shares = " | ".join(f"{np.mean(at[3] == j):.1%}" for j in range(len(models)))
        rq, rc = _random_same_mix(at[3], y, cost, reference)
        line = f"{t:.3f}{' *' if t == target else ''} | {shares} | {at[1]:.3f} | {at[2]:.3f} | {rq:.3f} | {rc:.3f}"
        if casc:
            cat = _at(casc, scurve or [], t)
            line += f" | {cat[1]:.3f} | {cat[2]:.3f}" if cat else " | - | -"
        report(line)
    at = _at(sweep, curve, target)
    if at is not None:
        report(f"at quality_target {target}: cost {at[2]:.1%} of always-{ref} (saves {1 - at[2]:.1%}), "
               f"quality {at[1]:.1%} of {ref}'s")


def _plot(path: Path, sweep: Any, casc: Any, models: Sequence[str], y: np.ndarray, cost: np.ndarray,
          reference: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'tiergate[train]'") from e
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = sorted((c, q) for _, q, c, _ in sweep)
    ax.plot([c for c, _ in pts], [q for _, q in pts], label="learned router")
    if casc:
        cp = sorted((c, q) for _, q, c, _ in casc)
        ax.plot([c for c, _ in cp], [q for _, q in cp], label="cascade (learned scorer)")
    q = y.mean(axis=0) / y[:, reference].mean()
    c = cost.mean(axis=0) / cost[:, reference].mean()
    for j, m in enumerate(models):
        ax.scatter([c[j]], [q[j]], marker="o")
        ax.annotate(m, (c[j], q[j]))
    lo = int(np.argmin(c))
    ax.plot([c[lo], 1.0], [q[lo], 1.0], linestyle="--", label="random split")
    ax.set_xlabel("cost relative to always-" + models[reference])
    ax.set_ylabel("quality relative to " + models[reference])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report_lines(manifest: Mapping[str, Any]) -> list[str]:
    return [f"wrote artifact {manifest['id']} ({', '.join(manifest['models'])})"]

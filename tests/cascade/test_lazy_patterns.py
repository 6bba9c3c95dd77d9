"""The scorer's and the learned router's regexes are compiled on first use, not at import
(a cold start that never scores an answer does not pay for them), and behave as compiled
ones do."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tiergate.patterns import LazyPattern

PROBE = r"""
import json, re
from tiergate.cascade import scoring
from tiergate.routing.learned import features
lazy = {m.__name__: [n for n in dir(m) if isinstance(getattr(m, n), scoring.LazyPattern)] for m in (scoring, features)}
eager = {m.__name__: [n for n in dir(m) if isinstance(getattr(m, n), re.Pattern)] for m in (scoring, features)}
used_before = "search" in vars(scoring._ASK_JSON)
exp = scoring.expectations({"messages": [{"role": "user", "content": "Answer in JSON please"}]})
print(json.dumps({"lazy": lazy, "eager": eager, "used_before": used_before, "json": exp.json,
                  "used_after": "search" in vars(scoring._ASK_JSON_ONLY)}))
"""


def test_patterns_compile_on_first_use():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads(out.stdout)
    assert state["eager"] == {"tiergate.cascade.scoring": [], "tiergate.routing.learned.features": []}
    assert len(state["lazy"]["tiergate.cascade.scoring"]) == 15
    assert len(state["lazy"]["tiergate.routing.learned.features"]) == 6
    assert state["used_before"] is False
    assert state["json"] is True and state["used_after"] is True


def test_lazy_pattern_matches_like_the_compiled_one():
    text = "Line one\n- item A\n- item B\nJSON here: {\"a\": 1}"
    for pattern, flags in ((r"^\s*-\s*(\w+)", re.M), (r"\bjson\b", re.I), (r"\s+", 0)):
        lazy, real = LazyPattern(pattern, flags), re.compile(pattern, flags)
        assert lazy.findall(text) == real.findall(text)
        assert lazy.sub(" ", text) == real.sub(" ", text)
        assert lazy.search(text).span() == real.search(text).span()
        assert lazy.pattern == real.pattern and lazy.flags | re.U == real.flags

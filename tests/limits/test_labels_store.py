"""Routing labels on every store (SQLite and DynamoDB): a request's label written once,
feedback accepted once per request id (conditional write), refused across tenants,
never visible to usage queries, exported in the training shape."""

from __future__ import annotations

import pytest

from tiergate.errors import Conflict, PermissionDenied
from tiergate.limits import usage
from tiergate.limits.admission import Principal
from tiergate.routing.learned.labels import LabelLog, export

ACME = Principal("key_a", "acme")
GLOBEX = Principal("key_g", "globex")
MSGS = [{"role": "user", "content": "Name the capital city of Chile."}]


async def test_labels_and_feedback_once(store):
    log = LabelLog(store, collect_prompts=True)
    await log.record("r1", ACME, model="weak", deployment="weak", tier=1, messages=MSGS,
                     steps=[{"model": "weak", "score": 0.2, "reasons": ["judge:3/10"], "purpose": "answer"},
                            {"model": "strong", "score": 0.9, "reasons": [], "purpose": "answer"}])
    # A replayed settlement writes nothing twice (and does not fail).
    await log.record("r1", ACME, model="strong", deployment="strong", tier=3, messages=MSGS)
    with pytest.raises(PermissionDenied):
        await log.feedback(GLOBEX, "r1", score=1.0, thumbs=None, comment=None)
    fb = await log.feedback(Principal("key_b", "acme"), "r1", score=0.25, thumbs=None, comment="meh")
    assert fb["model"] == "weak"
    with pytest.raises(Conflict):
        await log.feedback(ACME, "r1", score=1.0, thumbs=None, comment=None)

    rows = await export(store)
    assert rows == [{"id": "r1", "messages": MSGS, "outcomes": {"weak": 0.25, "strong": 0.9},
                     "label_source": {"weak": "feedback", "strong": "cascade"}, "tenant": "acme",
                     "at": rows[0]["at"]}]
    assert await export(store, tenant="globex") == []
    assert await usage.query(store, since=0) == []  # labels share the table, not the ledger


async def test_prompts_are_kept_only_when_collected(store):
    log = LabelLog(store, collect_prompts=False)
    await log.record("r2", ACME, model="weak", deployment="weak", tier=1, messages=MSGS)
    rec = await store.get("usage", "label#r2", "request")
    assert rec is not None and "messages" not in rec
    assert await export(store) == []  # nothing to train on without the prompt

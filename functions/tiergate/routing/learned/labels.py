"""Labels from traffic: what each request was routed to, the feedback callers give on it,
cascade steps' scores and judges' verdicts, exported in the training shape.

Stored beside the usage records, in the ``usage`` table of the record store (SQLite or
DynamoDB), under their own partition key so no usage query ever sees them::

    pk = "label#<request id>", sk = "request"    who asked, what answered, how it was routed,
                                                 cascade step labels, the prompt (only with
                                                 routing.learned.collect_prompts: true)
    pk = "label#<request id>", sk = "feedback"   the caller's score / thumbs / comment

Both are written with the condition "absent" (DynamoDB: ``attribute_not_exists(pk) OR
expires_at < :now``): a request's label is written once even if settlement is replayed,
and feedback is accepted once per request id -- a second POST is a 409, never an
overwrite. Label records carry no ``tenant``/``ts`` attributes (``label_tenant``/``at``
instead), so the usage table's ``by_tenant`` index does not pick them up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tiergate.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from tiergate.limits.admission import Principal
from tiergate.limits.usage import iso
from tiergate.stores.base import Cond, ConditionFailed, RecordStore

TABLE = "usage"
PREFIX = "label#"
REQUEST_SK = "request"
FEEDBACK_SK = "feedback"
MAX_COMMENT = 2000


def _pk(request_id: str) -> str:
    return PREFIX + request_id


def step_labels(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A cascade's steps as labels: a judge's verdict when one ran, else the step's score."""
    out = []
    for s in steps:
        if not s.get("model") or s.get("score") is None or s.get("purpose", "answer") != "answer":
            continue
        verdict = next((r for r in s.get("reasons") or () if str(r).startswith("judge:") and "/10" in str(r)), None)
        if verdict is not None:
            try:
                out.append({"model": s["model"], "score": float(verdict[6:].split("/")[0]) / 10, "source": "judge"})
                continue
            except ValueError:
                pass
        out.append({"model": s["model"], "score": float(s["score"]), "source": "cascade"})
    return out


class LabelLog:
    def __init__(self, store: RecordStore, *, collect_prompts: bool = False, retention_days: int = 90,
                 clock: Any = time.time) -> None:
        self.store = store
        self.collect_prompts = collect_prompts
        self.retention_s = retention_days * 86400
        self._clock = clock

    async def record(self, request_id: str, principal: Principal, *, model: str, deployment: str | None,
                     tier: int | None, messages: Sequence[Mapping[str, Any]] | None = None,
                     router: Mapping[str, Any] | None = None, steps: Sequence[Mapping[str, Any]] = ()) -> None:
        """The request's label record (once: condition "absent", a replay writes nothing)."""
        now = self._clock()
        rec: dict[str, Any] = {
            "pk": _pk(request_id), "sk": REQUEST_SK, "request_id": request_id, "key_id": principal.key_id,
            "label_tenant": principal.tenant, "at": iso(now), "model": model, "deployment": deployment,
            "tier": tier, "expires_at": int(now) + self.retention_s,
        }
        if router:
            rec["router"] = {k: router.get(k) for k in ("kind", "predicted_quality", "target", "chosen", "artifact")}
        if steps:
            rec["steps"] = step_labels(steps)
        if self.collect_prompts and messages is not None:
            rec["messages"] = [dict(m) for m in messages]
        try:
            # Condition "absent": a request's label is written once (a retried settlement is a no-op).
            await self.store.put(TABLE, rec, Cond(absent=True))
        except ConditionFailed:
            pass

    async def feedback(self, principal: Principal, request_id: str, *, score: float, thumbs: str | None,
                       comment: str | None) -> dict[str, Any]:
        """Store the caller's feedback on one of its requests; once per request id."""
        req = await self.store.get(TABLE, _pk(request_id), REQUEST_SK)
        if req is None:
            raise NotFound(f"No request '{request_id}' is known here (labels are kept for requests routed "
                           "while routing.learned is configured)", param="request_id")
        mine = principal.is_master or req.get("key_id") == principal.key_id or (
            req.get("label_tenant") == principal.tenant and not principal.key_id.startswith(("local", "master")))
        if not mine:
            raise PermissionDenied("Feedback is accepted only from the key or tenant that made the request "
                                   "(or the master key)", param="request_id")
        now = self._clock()
        rec = {"pk": _pk(request_id), "sk": FEEDBACK_SK, "request_id": request_id, "score": score,
               "thumbs": thumbs, "comment": comment, "key_id": principal.key_id, "model": req.get("model"),
               "at": iso(now), "expires_at": int(req.get("expires_at") or int(now) + self.retention_s)}
        try:
            # Condition "absent": feedback is accepted once per request id; a second one is refused.
            await self.store.put(TABLE, rec, Cond(absent=True))
        except ConditionFailed:
            raise Conflict(f"Feedback for request '{request_id}' was already recorded", param="request_id") from None
        return {k: v for k, v in rec.items() if k not in ("pk", "sk", "expires_at")}


def feedback_score(score: float | None, thumbs: str | None) -> float:
    if score is None and thumbs is None:
        raise InvalidRequest("feedback needs 'score' (0..1) or 'thumbs' ('up' or 'down')", param="score")
    if score is not None:
        return float(score)
    return 1.0 if thumbs == "up" else 0.0


async def export(store: RecordStore, *, since: float | None = None, tenant: str | None = None,
                 limit: int = 1_000_000) -> list[dict[str, Any]]:
    """Labeled examples in the training shape. Outcomes per model: the caller's feedback on
    the model that answered, else a judge's verdict, else the cascade step's score. Labels
    whose prompt was not collected are left out (nothing to train on)."""
    lo = iso(since) if since is not None else None
    requests: dict[str, dict[str, Any]] = {}
    feedback: dict[str, dict[str, Any]] = {}
    for r in await store.scan(TABLE, limit=limit):
        if not str(r.get("pk", "")).startswith(PREFIX):
            continue
        (requests if r.get("sk") == REQUEST_SK else feedback)[r["request_id"]] = r
    rows = []
    for rid, r in sorted(requests.items(), key=lambda kv: kv[1].get("at", "")):
        if (lo and r.get("at", "") < lo) or (tenant and r.get("label_tenant") != tenant) or not r.get("messages"):
            continue
        outcomes: dict[str, float] = {}
        sources: dict[str, str] = {}
        for s in r.get("steps") or ():
            if s["model"] not in outcomes or s["source"] == "judge":
                outcomes[s["model"]], sources[s["model"]] = s["score"], s["source"]
        fb = feedback.get(rid)
        if fb is not None and r.get("model"):
            outcomes[r["model"]], sources[r["model"]] = float(fb["score"]), "feedback"
        if not outcomes:
            continue
        rows.append({"id": rid, "messages": r["messages"], "outcomes": outcomes, "label_source": sources,
                     "tenant": r.get("label_tenant"), "at": r.get("at")})
    return rows


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

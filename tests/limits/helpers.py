"""Small builders shared by the limits tests."""

from __future__ import annotations

import uuid

from tiergate.config.catalog import ModelSpec
from tiergate.limits.admission import AdmissionRequest, Outcome, Ticket


def request(dep: ModelSpec, prompt: int = 1000, max_out: int = 1000, *, rid: str | None = None) -> AdmissionRequest:
    return AdmissionRequest(request_id=rid or uuid.uuid4().hex, deployment=dep, prompt_tokens=prompt,
                            max_output_tokens=max_out, estimate_usd=dep.cost_usd(prompt, max_out))


def outcome(ticket: Ticket, prompt: int = 1000, completion: int = 500, *, capability: str | None = "coding",
            status: str = "ok") -> Outcome:
    dep = ticket.deployment
    return Outcome(deployment=dep, prompt_tokens=prompt, completion_tokens=completion,
                   cost_usd=dep.cost_usd(prompt, completion), latency_ms=12.5, attempts=1, outcome=status,
                   capability=capability)

"""One admitted request's state between admission and settlement (the gateway's and the
stream run's shared record): its plan, reservations, call context and telemetry context."""

from __future__ import annotations

from dataclasses import dataclass, field

from tiergate.config.catalog import ModelSpec
from tiergate.execution.executor import AttemptRecord, CallContext, tried
from tiergate.gateway.results import ResponseMeta
from tiergate.limits.admission import Ticket
from tiergate.request import TraceParent
from tiergate.routing.plan import RoutePlan


@dataclass(slots=True)
class Admitted:
    plan: RoutePlan
    ticket: Ticket
    ctx: CallContext
    started: float
    notes: list[str] = field(default_factory=list)
    #: The GenAI ``gen_ai.operation.name`` of the door (telemetry).
    operation: str = "chat"
    #: The caller's trace context: the request's span is its child (telemetry).
    trace: TraceParent | None = None
    #: Prompt tokens the reservation covers (the estimate plus its margin).
    prompt_reserved: int = 0
    #: Reservations for retries after an attempt with an unknown outcome (one each).
    extra: list[Ticket] = field(default_factory=list)

    @property
    def tickets(self) -> list[Ticket]:
        return [self.ticket, *self.extra]

    def meta(self, spec: ModelSpec, attempts: list[AttemptRecord], cost: float | None = None) -> ResponseMeta:
        return ResponseMeta(self.ctx.request_id, spec, tried(attempts), "; ".join([self.plan.reason, *self.notes]),
                            cost, dict(self.ticket.headers))


def trace_fields(trace: TraceParent | None) -> dict[str, str]:
    return {} if trace is None else {"traceparent": trace.traceparent, "tracestate": trace.tracestate}


def capability(plan: RoutePlan) -> str | None:
    return plan.task.task_type if plan.task else None

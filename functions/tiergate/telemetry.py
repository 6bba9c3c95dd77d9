"""Request telemetry: one ``emit(record)`` per settled request.

``Telemetry`` is the contract the gateway calls; ``NoopTelemetry`` serves local/edge use,
:class:`tiergate.aws.telemetry.PowertoolsTelemetry` the Lambda functions.

A record is a flat mapping; the fields the metrics read (all optional):

    model: str               tier: int            outcome: "ok" | "cache_hit" | "client_disconnected"
                                                  | "error:<code>" (code of the error hierarchy)
    latency_ms: float        prompt_tokens: int   completion_tokens: int
    cost_usd: float          cache_hit: bool      ttft_ms: float (streams: admission to first chunk)
    attempts: int            fallback: bool       task_type: str (the classified task)
    requested_model: str     upstream_model: str  provider: str   operation: "chat"
    cascade_policy: str      cascade_steps: int   (cascaded requests)
    budget_utilization_percent: float   (highest utilization of the key's budgets after settle)

Prompt and answer text never reaches the logs unless ``log_prompts`` is set: the fields in
``PROMPT_FIELDS`` are dropped from the logged record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

# Metric and dimension names: the CDK dashboard and alarms (infra/constructs/observability.py)
# read these, so renaming one is a breaking change.
METRIC_REQUESTS = "Requests"
METRIC_LATENCY = "LatencyMs"
METRIC_PROMPT_TOKENS = "PromptTokens"
METRIC_COMPLETION_TOKENS = "CompletionTokens"
METRIC_COST = "CostUsd"
METRIC_CACHE_HITS = "CacheHits"
METRIC_CACHE_SAVED = "CacheSavedUSD"
METRIC_ERRORS = "Errors"
METRIC_BUDGET_UTILIZATION = "BudgetUtilizationPercent"
DIMENSION_TIER = "tier"
DIMENSION_MODEL = "model"
#: Both dimension sets every request is published under (besides Powertools' ``service``).
DIMENSION_SETS = (DIMENSION_TIER, DIMENSION_MODEL)

PROMPT_FIELDS = frozenset({"messages", "prompt", "input", "content", "response", "output", "completion", "choices"})


@runtime_checkable
class Telemetry(Protocol):
    def emit(self, record: Mapping[str, Any]) -> None:
        """Publish one settled request. Must never raise into the request path."""


class NoopTelemetry:
    """Local use: nothing is published."""

    def emit(self, record: Mapping[str, Any]) -> None:
        return None


class FanoutTelemetry:
    """Several sinks (Prometheus, OpenTelemetry, Powertools), each called in turn; a sink
    that raises is skipped for that record, never the request."""

    def __init__(self, sinks: Sequence[Telemetry]) -> None:
        self.sinks = tuple(sinks)

    def emit(self, record: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink.emit(record)
            except Exception:  # telemetry must never fail a request
                log.exception("telemetry sink %s failed", type(sink).__name__)

    def flush(self) -> None:
        for sink in self.sinks:
            flush_telemetry(sink)

    def close(self) -> None:
        for sink in self.sinks:
            close_telemetry(sink)


@runtime_checkable
class Flushable(Protocol):
    def flush(self) -> None:
        """Export what is buffered now (a Lambda invocation's end, before the freeze)."""


@runtime_checkable
class Closable(Protocol):
    def close(self) -> None:
        """Export what is buffered and stop background work (app shutdown)."""


def flush_telemetry(telemetry: object) -> None:
    if isinstance(telemetry, Flushable):
        try:
            telemetry.flush()
        except Exception:
            log.exception("telemetry flush failed")


def close_telemetry(telemetry: object) -> None:
    if isinstance(telemetry, Closable):
        try:
            telemetry.close()
        except Exception:
            log.exception("telemetry close failed")


def loggable(record: Mapping[str, Any], *, log_prompts: bool = False) -> dict[str, Any]:
    """The record as it may be logged: prompt/answer fields dropped unless ``log_prompts``."""
    if log_prompts:
        return dict(record)
    return {k: v for k, v in record.items() if k not in PROMPT_FIELDS}


def metric_values(record: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """(name, unit, value) for each per-request metric the record supports."""
    out: list[tuple[str, str, float]] = [(METRIC_REQUESTS, "Count", 1.0)]
    for field, name, unit in (
        ("latency_ms", METRIC_LATENCY, "Milliseconds"),
        ("prompt_tokens", METRIC_PROMPT_TOKENS, "Count"),
        ("completion_tokens", METRIC_COMPLETION_TOKENS, "Count"),
        ("cost_usd", METRIC_COST, "None"),
        ("saved_usd", METRIC_CACHE_SAVED, "None"),
    ):
        value = record.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append((name, unit, float(value)))
    out.append((METRIC_CACHE_HITS, "Count", 1.0 if record.get("cache_hit") else 0.0))
    # Outcomes are "ok", "cache_hit", "client_disconnected" or "error:<code>".
    is_error = str(record.get("outcome") or "").startswith("error") or bool(record.get("error"))
    out.append((METRIC_ERRORS, "Count", 1.0 if is_error else 0.0))
    return out

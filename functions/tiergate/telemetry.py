"""Request telemetry: one ``emit(record)`` per settled request.

``Telemetry`` is the contract the gateway calls; ``NoopTelemetry`` serves local/edge use,
``PowertoolsTelemetry`` the Lambda functions (Powertools Logger as JSON, Metrics as EMF,
Tracer exposed for the handler to decorate). Powertools is imported lazily, on first use.

A record is a flat mapping; the fields the metrics read (all optional):

    model: str               tier: int            outcome: "ok" | "error"
    latency_ms: float        prompt_tokens: int   completion_tokens: int
    cost_usd: float          cache_hit: bool      error: str (error code, e.g. "budget_exceeded")
    budget_utilization_percent: float   (highest utilization of the key's budgets after settle)

Prompt and answer text never reaches the logs unless ``log_prompts`` is set: the fields in
``PROMPT_FIELDS`` are dropped from the logged record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

# Metric and dimension names: the CDK dashboard and alarms (infra/constructs/observability.py)
# read these, so renaming one is a breaking change.
METRIC_REQUESTS = "Requests"
METRIC_LATENCY = "LatencyMs"
METRIC_PROMPT_TOKENS = "PromptTokens"
METRIC_COMPLETION_TOKENS = "CompletionTokens"
METRIC_COST = "CostUsd"
METRIC_CACHE_HITS = "CacheHits"
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
    ):
        value = record.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append((name, unit, float(value)))
    out.append((METRIC_CACHE_HITS, "Count", 1.0 if record.get("cache_hit") else 0.0))
    # Outcomes are "ok", "cache_hit", "client_disconnected" or "error:<code>".
    is_error = str(record.get("outcome") or "").startswith("error") or bool(record.get("error"))
    out.append((METRIC_ERRORS, "Count", 1.0 if is_error else 0.0))
    return out


class PowertoolsTelemetry:
    """Lambda telemetry. ``service``/``namespace`` default to Powertools' own environment
    variables (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE), set by the CDK stack.

    Metrics are flushed on every ``emit``: the streaming function runs the app under uvicorn
    with no handler decorator to flush at the end of an invocation.
    """

    def __init__(self, *, service: str | None = None, namespace: str | None = None,
                 log_prompts: bool = False) -> None:
        self._service = service
        self._namespace = namespace
        self._log_prompts = log_prompts
        self._logger: Any = None
        self._metrics: Any = None
        self._tracer: Any = None

    @property
    def logger(self) -> Any:
        if self._logger is None:
            from aws_lambda_powertools import Logger

            self._logger = Logger(service=self._service)
        return self._logger

    @property
    def metrics(self) -> Any:
        if self._metrics is None:
            from aws_lambda_powertools import Metrics

            self._metrics = Metrics(service=self._service, namespace=self._namespace)
        return self._metrics

    @property
    def tracer(self) -> Any:
        """For the handler: ``@telemetry.tracer.capture_lambda_handler``."""
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(service=self._service)
        return self._tracer

    def emit(self, record: Mapping[str, Any]) -> None:
        try:
            self.logger.info("request", extra={"tiergate": loggable(record, log_prompts=self._log_prompts)})
            self._publish(record)
        except Exception:  # telemetry must never fail a request
            self.logger.exception("telemetry emit failed")

    def _publish(self, record: Mapping[str, Any]) -> None:
        values = metric_values(record)
        for dimension in DIMENSION_SETS:
            value = record.get(dimension)
            if value is None:
                continue
            self._flush({dimension: str(value)}, values)
        utilization = record.get("budget_utilization_percent")
        if isinstance(utilization, int | float) and not isinstance(utilization, bool):
            self._flush({}, [(METRIC_BUDGET_UTILIZATION, "Percent", float(utilization))])

    def _flush(self, dimensions: dict[str, str], values: list[tuple[str, str, float]]) -> None:
        metrics = self.metrics
        for name, value in dimensions.items():
            metrics.add_dimension(name=name, value=value)
        for name, unit, value in values:
            metrics.add_metric(name=name, unit=unit, value=value)
        metrics.flush_metrics()

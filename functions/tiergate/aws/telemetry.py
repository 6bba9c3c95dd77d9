"""Lambda telemetry: Powertools Logger as JSON, Metrics as EMF, Tracer for the handler to
decorate. Powertools is imported lazily, on first use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tiergate.telemetry import DIMENSION_SETS, METRIC_BUDGET_UTILIZATION, loggable, metric_values


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

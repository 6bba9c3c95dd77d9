"""Observability sinks behind :class:`tiergate.telemetry.Telemetry`: Prometheus series
(:mod:`.prometheus`, every home) and OpenTelemetry GenAI spans and metrics (:mod:`.otel`,
when ``TIERGATE_OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set)."""

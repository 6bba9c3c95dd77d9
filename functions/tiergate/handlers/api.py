"""The API Lambda entry point (buffered responses through Mangum).

This module is the only one that knows Mangum. The app is built at import time, so with
SnapStart the whole initialization (catalog, provider pools) is snapshotted once at
publish. ``stream: true`` requests are served by the same app under uvicorn behind the
Lambda Web Adapter (``functions/run.sh``, :mod:`tiergate.handlers.asgi`): Mangum would
buffer a StreamingResponse.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

from tiergate.compose import build_cloud_app
from tiergate.handlers import ready
from tiergate.telemetry import flush_telemetry

app = build_cloud_app()
# lifespan off: Mangum would run startup/shutdown around every invocation and close the
# pooled provider clients each time; services are built eagerly above instead.
_mangum = Mangum(app, lifespan="off", api_gateway_base_path=app.state.services.settings.base_path or "/")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return _mangum(event, context)
    finally:
        # OpenTelemetry (when configured) exports before the invocation ends: a frozen
        # instance would hold its spans until the next invocation, or lose them.
        flush_telemetry(app.state.services.telemetry)


ready()  # init done: see tiergate.handlers

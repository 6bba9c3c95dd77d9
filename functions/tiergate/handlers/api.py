"""The API Lambda entry point (buffered responses through Mangum).

This module is the only one that knows Mangum. The app is built at import time, so with
SnapStart the whole initialization (catalog, provider pools) is snapshotted once at
publish. ``stream: true`` requests are served by the same app under uvicorn behind the
Lambda Web Adapter (``functions/run.sh``, :mod:`tiergate.handlers.asgi`): Mangum would
buffer a StreamingResponse.
"""

from __future__ import annotations

from mangum import Mangum

from tiergate.compose import build_cloud_app
from tiergate.handlers import ready

app = build_cloud_app()
# lifespan off: Mangum would run startup/shutdown around every invocation and close the
# pooled provider clients each time; services are built eagerly above instead.
handler = Mangum(app, lifespan="off", api_gateway_base_path=app.state.services.settings.base_path or "/")
ready()  # init done: see tiergate.handlers

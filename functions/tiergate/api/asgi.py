"""``tiergate.api.asgi:app``: the app built from the environment, for ``uvicorn`` (and
the Lambda Web Adapter, which runs the same app for response streaming)."""

from tiergate.bootstrap import build_app
from tiergate.settings import Settings

app = build_app(Settings())

"""``tiergate.handlers.asgi:app``: the app built from the environment, for ``uvicorn`` and
for the Lambda Web Adapter, which runs it for API Gateway response streaming (Mangum would
buffer a stream). It is built exactly as the Mangum handler builds it: secrets from
``TIERGATE_PROVIDER_KEYS_SECRET`` when set, the environment otherwise."""

from tiergate.compose import build_cloud_app
from tiergate.handlers import ready

app = build_cloud_app()
ready()  # init done: see tiergate.handlers

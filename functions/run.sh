#!/bin/bash
# Streaming function entrypoint (Lambda handler "run.sh"): the Lambda Web Adapter layer's
# /opt/bootstrap (AWS_LAMBDA_EXEC_WRAPPER) runs this instead of the Python runtime client,
# then proxies invocations to uvicorn and streams the response back (response_stream mode).
# Dependencies live in the layer (/opt/python); our code is /var/task.
export PYTHONPATH="/opt/python:/var/task${PYTHONPATH:+:$PYTHONPATH}"
exec python -m uvicorn tiergate.handlers.asgi:app --host 0.0.0.0 --port "${PORT:-8000}" --no-access-log

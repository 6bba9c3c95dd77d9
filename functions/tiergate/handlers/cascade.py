"""The cascade state machine's Lambda tasks: ONE function for every step.

Event (built by :mod:`tiergate.cascade.definition`): ``{"step": "answer" | "score" |
"recover" | "finish", "state": {...}}``; each step is the same function of
:mod:`tiergate.cascade.steps` the in-process engine calls. A failure raises a
:mod:`tiergate.errors` class, so Step Functions sees ``errorType`` = the class name and its
``Retry``/``Catch`` match ``tiergate.errors.RETRYABLE_ERROR_NAMES``. This module only
dispatches.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from tiergate.cascade import steps
from tiergate.cascade.service import port_for_state
from tiergate.compose import build_cascade_services
from tiergate.errors import InvalidRequest, ServiceUnavailable
from tiergate.handlers import ready
from tiergate.services import Services

STEPS = ("answer", "score", "recover", "finish")


class CascadeTasks:
    """Callable as a Lambda handler over a services container. One event loop per instance,
    reused across invocations so pooled provider clients stay usable."""

    def __init__(self, services: Services) -> None:
        if services.cascades is None:
            raise ServiceUnavailable("the cascade tasks need the cascade runner")
        self.services = services
        self._deps = services.cascades.deps
        self._loop = asyncio.new_event_loop()

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        step = event.get("step") if isinstance(event, dict) else None
        state = event.get("state") if isinstance(event, dict) else None
        if step not in STEPS:
            raise InvalidRequest(f"unknown cascade step {step!r} (expected one of {', '.join(STEPS)})")
        if not isinstance(state, dict) or "policy" not in state or "cursor" not in state:
            raise InvalidRequest("cascade task event needs a 'state' with 'policy' and 'cursor'")
        if step == "finish":
            return steps.finish(state)
        return self._loop.run_until_complete(self._run(step, state))

    async def _run(self, step: str, state: dict[str, Any]) -> dict[str, Any]:
        port = await port_for_state(self._deps, state, deadline_s=self.services.catalog.reliability.deadline_s)
        if step == "answer":
            return await steps.answer(port, state)
        if step == "score":
            return await steps.score(port, state)
        return steps.recover(port, state)

    def close(self) -> None:
        self._loop.run_until_complete(self.services.registry.aclose())
        self._loop.close()


@lru_cache(maxsize=1)
def default_tasks() -> CascadeTasks:
    """Built on the first invocation from the environment, as the API function is."""
    return CascadeTasks(build_cascade_services())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return default_tasks()(event, context)


ready()  # imports done (the services are built on the first invocation): see tiergate.handlers

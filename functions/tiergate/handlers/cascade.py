"""The cascade state machine's Lambda tasks: ONE function for every step.

Event (built by :mod:`tiergate.routing.stepfunctions`): ``{"step": "answer" | "score" |
"finish", "state": {...}}``. A failure raises a :mod:`tiergate.errors` class, so Step
Functions sees ``errorType`` = the class name and its ``Retry``/``Catch`` match
``tiergate.errors.RETRYABLE_ERROR_NAMES``. The logic lives in
:mod:`tiergate.routing.cascade_steps`; this module only dispatches.
"""

from __future__ import annotations

import asyncio
import os
from functools import lru_cache
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tiergate.errors import InvalidRequest  # noqa: E402
from tiergate.routing import cascade_steps  # noqa: E402

STEPS = ("answer", "score", "finish")


class CascadeTasks:
    """Callable as a Lambda handler over a services container. One event loop per instance,
    reused across invocations so pooled provider clients stay usable."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self._loop = asyncio.new_event_loop()

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        step = event.get("step") if isinstance(event, dict) else None
        state = event.get("state") if isinstance(event, dict) else None
        if step not in STEPS:
            raise InvalidRequest(f"unknown cascade step {step!r} (expected one of {', '.join(STEPS)})")
        if not isinstance(state, dict) or "policy" not in state or "cursor" not in state:
            raise InvalidRequest("cascade task event needs a 'state' with 'policy' and 'cursor'")
        if step == "finish":
            return cascade_steps.finish(state)
        run = cascade_steps.answer if step == "answer" else cascade_steps.score
        return self._loop.run_until_complete(run(self.services, state))

    def close(self) -> None:
        self._loop.run_until_complete(self.services.registry.aclose())
        self._loop.close()


@lru_cache(maxsize=1)
def default_tasks() -> CascadeTasks:
    """Built on the first invocation from the environment, as the API function is."""
    from tiergate import catalog as catalog_mod
    from tiergate.api.app import build_services
    from tiergate.bootstrap import _optional
    from tiergate.cloud import cloud_settings_and_keys

    settings, keys = cloud_settings_and_keys()
    catalog = catalog_mod.load(settings.config)
    admission = None
    if (limits := _optional("tiergate.limits.bootstrap")) is not None:
        admission, _ = limits.build(settings, catalog)
    return CascadeTasks(build_services(settings, catalog, admission=admission, key_resolver=keys))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return default_tasks()(event, context)

"""``create_app``: the FastAPI application over a built :class:`~tiergate.services.Services`.

The home's composition (:mod:`tiergate.compose`) decides which parts and which extra
routes exist; this module only mounts routes and runs the lifecycle hooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from tiergate import __version__
from tiergate.api import errors
from tiergate.api.routes import (
    budget,
    chat,
    completions,
    dashboard,
    embeddings,
    feedback,
    health,
    keys,
    messages,
    metrics,
    models,
    responses,
    route,
    simple,
    usage,
)
from tiergate.services import Services
from tiergate.telemetry import close_telemetry

Hook = Callable[[Services], Awaitable[None]]

#: Routes every home serves, and the ones that need a record store.
CORE_ROUTERS: tuple[APIRouter, ...] = (models.router, route.router, health.router, simple.router,
                                       responses.router, metrics.router, dashboard.router)
#: The front doors on the hot path, mounted as plain Starlette routes.
DOORS = (("/v1/chat/completions", chat.chat_completions), ("/v1/messages", messages.messages),
         ("/v1/messages/count_tokens", messages.count_tokens), ("/v1/responses", responses.create_response),
         ("/v1/completions", completions.create_completion), ("/v1/embeddings", embeddings.create_embeddings))
STORE_ROUTERS: tuple[APIRouter, ...] = (keys.router, usage.router, budget.router, feedback.router)


def create_app(services: Services, *, extra_routers: Iterable[APIRouter] = (), on_startup: Iterable[Hook] = (),
               on_shutdown: Iterable[Hook] = ()) -> FastAPI:
    startup, shutdown = list(on_startup), list(on_shutdown)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        for hook in startup:
            await hook(services)
        try:
            yield
        finally:
            for hook in shutdown:
                await hook(services)
            await services.registry.aclose()
            await services.admission.aclose()
            if services.cache is not None:
                await services.cache.aclose()
            close_telemetry(services.telemetry)

    app = FastAPI(title="tiergate", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.services = services
    errors.install(app)
    # The hot path is a plain Starlette route: FastAPI's per-request dependency solving
    # costs more than the rest of the route (it has no dependencies to solve).
    for path, door in DOORS:
        app.add_route(path, door, methods=["POST"], include_in_schema=False)
    app.include_router(chat.docs_router)  # its schema in /docs; the route above answers
    routers = [*CORE_ROUTERS, *(STORE_ROUTERS if services.store is not None else ()), *extra_routers]
    for r in routers:
        app.include_router(r)
    return app

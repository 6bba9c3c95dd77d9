"""``create_app``: the FastAPI application over a built :class:`~tiergate.services.Services`.

The home's composition (:mod:`tiergate.compose`) decides which parts and which extra
routes exist; this module only mounts routes and runs the lifecycle hooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tiergate import __version__
from tiergate.api import errors, openapi
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
Door = Callable[[Request], Awaitable[Response]]

#: Routes every home serves, and the ones that need a record store.
CORE_ROUTERS: tuple[APIRouter, ...] = (models.router, route.router, health.router, simple.router,
                                       responses.router, metrics.router, dashboard.router)
#: The front doors on the hot path, mounted as plain Starlette routes.
DOORS = (("/v1/chat/completions", chat.chat_completions), ("/v1/messages", messages.messages),
         ("/v1/messages/count_tokens", messages.count_tokens), ("/v1/responses", responses.create_response),
         ("/v1/completions", completions.create_completion), ("/v1/embeddings", embeddings.create_embeddings))
STORE_ROUTERS: tuple[APIRouter, ...] = (keys.router, usage.router, budget.router, feedback.router)


class GatewayApp(FastAPI):
    """FastAPI that answers a POST to a front door before its middleware stack.

    Every request otherwise passes five middleware layers (server errors, FastAPI's
    exception telemetry and body limit, exception handlers, an exit stack), the router's
    path matching and the route's own exception wrapper, each a coroutine and most a
    ``send`` wrapper called again for every streamed chunk. A door's request does here
    what those layers would do for it: the app in the scope, the installed exception
    handlers by the exception's class (an unhandled one answers 500 and is raised again,
    for the server to log). Everything else -- other methods (405), other paths (404 with
    the door list), FastAPI's own OpenTelemetry when a global provider is set -- takes
    the ordinary path.
    """

    doors: dict[str, Door]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            if self.root_path:
                scope["root_path"] = self.root_path
            door = self.doors.get(get_route_path(scope))
            if door is not None and not self._native_telemetry.enabled():
                await self._answer(door, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _answer(self, door: Door, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        request = Request(scope, receive, send)
        try:
            response = await door(request)
        except Exception as exc:
            handler = next(h for c in type(exc).__mro__ if (h := self.exception_handlers.get(c)) is not None)
            await (await handler(request, exc))(scope, receive, send)
            if handler is self.exception_handlers[Exception]:
                raise  # as Starlette's ServerErrorMiddleware: the server logs it too
            return
        # A failure while sending is after the response started (both response classes
        # send their start first): nothing can be answered any more, as on the ordinary path.
        await response(scope, receive, send)


def create_app(services: Services, *, extra_routers: Iterable[APIRouter] = (), on_startup: Iterable[Hook] = (),
               on_shutdown: Iterable[Hook] = ()) -> FastAPI:
    startup, shutdown = list(on_startup), list(on_shutdown)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        # First: charge what a crash left reserved (orphaned holds), before new requests.
        await services.admission.start()
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

    app = GatewayApp(title="tiergate", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.services = services
    errors.install(app)
    # The hot path is a plain Starlette route: FastAPI's per-request dependency solving
    # costs more than the rest of the route (it has no dependencies to solve).
    # The doors also answer through GatewayApp's shortcut, before the middleware stack;
    # the routes stay for the ordinary path (a GET's 405, FastAPI's own telemetry).
    for path, door in DOORS:
        app.add_route(path, door, methods=["POST"], include_in_schema=False)
    app.doors = dict(DOORS)
    app.include_router(chat.docs_router)  # its schema in /docs; the route above answers
    routers = [*CORE_ROUTERS, *(STORE_ROUTERS if services.store is not None else ()), *extra_routers]
    for r in routers:
        app.include_router(r)
    openapi.install(app)
    return app

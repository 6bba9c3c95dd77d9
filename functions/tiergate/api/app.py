"""``create_app``: the FastAPI application, the same in both homes.

Everything the routes need is built here into one :class:`Services` container and put on
``app.state``; the home (CLI, Lambda handler, edge agent) decides which router,
admission, providers and extra routes to pass in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from tiergate import __version__
from tiergate.admission import Admission, MasterKeyAdmission
from tiergate.api import errors
from tiergate.api.routes import chat, health, models, route, simple
from tiergate.api.services import Deferrer, Planner, Services, Telemetry
from tiergate.catalog import Catalog, ModelSpec
from tiergate.execution.circuit import CircuitBoard
from tiergate.execution.executor import Executor
from tiergate.keys import EnvKeyResolver, KeyResolver, needs_key
from tiergate.providers.base import ProviderRegistry, default_registry
from tiergate.routing.plan import Router
from tiergate.settings import Settings

Hook = Callable[[Services], Awaitable[None]]


def availability(registry: ProviderRegistry, keys: KeyResolver) -> Callable[[ModelSpec], str | None]:
    """Why a deployment cannot be used right now (no adapter, no key), or None."""

    def why(spec: ModelSpec) -> str | None:
        if not registry.has(spec.adapter):
            return f"adapter '{spec.adapter}' not installed"
        if needs_key(spec) and not keys(spec):
            return f"no API key ({spec.api_key_env or spec.api_key_secret} not set)"
        return None

    return why


def build_services(
    settings: Settings,
    catalog: Catalog,
    *,
    registry: ProviderRegistry | None = None,
    admission: Admission | None = None,
    router: Planner | None = None,
    key_resolver: KeyResolver | None = None,
    deferrer: Deferrer | None = None,
    telemetry: Telemetry | None = None,
    health_sources: Sequence[Any] = (),
    extra: dict[str, Any] | None = None,
) -> Services:
    registry = registry or default_registry()
    keys = key_resolver or EnvKeyResolver()
    rel = catalog.reliability
    circuits = CircuitBoard(threshold=rel.circuit_failure_threshold, cooldown_s=rel.circuit_cooldown_s)
    avail = availability(registry, keys)
    if router is None:
        router = Router(catalog, available=avail, circuit_open=lambda s: circuits.is_open(s.deployment_id))
    master = settings.master_key.get_secret_value() if settings.master_key else None
    return Services(
        settings=settings, catalog=catalog, registry=registry, keys=keys, circuits=circuits, router=router,
        executor=Executor(catalog, registry, keys, circuits), admission=admission or MasterKeyAdmission(master),
        availability=avail, deferrer=deferrer, telemetry=telemetry, health_sources=list(health_sources),
        extra=dict(extra or {}),
    )


def create_app(
    services: Services,
    *,
    extra_routers: Iterable[APIRouter] = (),
    on_startup: Iterable[Hook] = (),
    on_shutdown: Iterable[Hook] = (),
) -> FastAPI:
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

    app = FastAPI(title="tiergate", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.services = services
    errors.install(app)
    # The hot path is a plain Starlette route: FastAPI's per-request dependency solving
    # costs more than the rest of the route (it has no dependencies to solve).
    app.add_route("/v1/chat/completions", chat.chat_completions, methods=["POST"], include_in_schema=False)
    for r in (models.router, route.router, health.router, simple.router, *extra_routers):
        app.include_router(r)
    return app

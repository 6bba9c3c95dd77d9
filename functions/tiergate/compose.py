"""The composition root: every home's app is assembled here, from plain imports.

Homes and their builders:

* local (``tiergate serve``): :func:`build_app` with the plugins the CLI found (the
  local model from ``tiergate_edge``);
* the Lambda API (Mangum) and stream (Web Adapter) functions: :func:`build_cloud_app`;
* the Lambda cascade task: :func:`build_cascade_services`;
* the edge agent: ``tiergate_edge.agent`` builds its own parts (offload router, recording
  admission, queue) and passes them to :func:`build_services` / :func:`build_app`.

A home extends the core only through :class:`Plugin` and the typed keyword arguments of
:func:`build_services`; nothing is looked up by name at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI

from tiergate.api.app import Hook, create_app
from tiergate.cascade.runner import CascadeRunner, RemoteCascade
from tiergate.cascade.service import CascadeDeps
from tiergate.config import catalog as catalog_mod
from tiergate.config.adapters import LITELLM
from tiergate.config.catalog import Catalog
from tiergate.execution.circuit import CircuitBoard
from tiergate.execution.executor import Executor
from tiergate.limits.admission import Admission
from tiergate.limits.idempotency import Idempotency
from tiergate.limits.store_admission import StoreAdmission
from tiergate.limits.stored_responses import ResponseStore
from tiergate.limits.virtual_keys import KeyService
from tiergate.providers.credentials import EnvKeyResolver, KeyResolver
from tiergate.providers.registry import ProviderRegistry, default_registry
from tiergate.routing.plan import Router
from tiergate.services import Availability, Deferrer, HealthSource, JobLookup, Planner, Services
from tiergate.settings import Settings
from tiergate.stores import open_store
from tiergate.telemetry import NoopTelemetry, Telemetry


class Plugin:
    """What a home adds to the core; override what you need (the defaults add nothing)."""

    def register_adapters(self, registry: ProviderRegistry) -> None:
        """Register provider adapters (the edge: ``llama-cpp``)."""

    def prepare(self, catalog: Catalog) -> None:
        """Work to do once before serving, in the foreground (assemble a bundled model)."""

    def routers(self) -> Sequence[APIRouter]:
        return ()

    async def start(self, services: Services) -> None:
        return None

    async def stop(self, services: Services) -> None:
        return None

    def health_info(self) -> Mapping[str, Any]:
        return {}


def build_services(
    settings: Settings,
    catalog: Catalog | None = None,
    *,
    registry: ProviderRegistry | None = None,
    credentials: KeyResolver | None = None,
    admission: Admission | None = None,
    router: Planner | None = None,
    telemetry: Telemetry | None = None,
    deferrer: Deferrer | None = None,
    jobs: JobLookup | None = None,
    plugins: Sequence[Plugin] = (),
    health_sources: Sequence[HealthSource] = (),
    remote_cascade: RemoteCascade | None = None,
    responses: ResponseStore | None = None,
) -> Services:
    """Every part a request needs. Without an ``admission`` the store-backed one is built
    (virtual keys, budgets, rate limits, usage, idempotency on ``settings.store``)."""
    catalog = catalog or catalog_mod.load(settings.config)
    registry = registry or default_registry()
    for plugin in plugins:
        plugin.register_adapters(registry)
    credentials = credentials or EnvKeyResolver()
    rel = catalog.reliability
    circuits = CircuitBoard(threshold=rel.circuit_failure_threshold, cooldown_s=rel.circuit_cooldown_s)
    availability = Availability(registry, credentials)
    if router is None:
        router = Router(catalog, available=availability, circuit_open=lambda s: circuits.is_open(s.deployment_id))
    executor = Executor(catalog, registry, credentials, circuits)
    store = virtual_keys = idempotency = None
    if admission is None:
        # A local emulator endpoint (dev, tests) gets its tables created; in the cloud CDK owns them.
        store = open_store(settings, create_tables=settings.dynamodb_endpoint_url is not None)
        virtual_keys = KeyService(store, cache_ttl_s=settings.key_cache_ttl_s)
        # The admission owns the store: the app's shutdown (admission.aclose) drains
        # background settlements and closes it.
        admission = StoreAdmission(settings, catalog, store, keys=virtual_keys, owns_store=True)
        cfg = catalog.budgets
        idempotency = Idempotency(store, ttl_s=cfg.idempotency_ttl_s, wait_s=cfg.idempotency_wait_s)
        responses = responses or ResponseStore(store, ttl_s=settings.responses_ttl_s)
    if remote_cascade is None and settings.cascade_state_machine_arn:
        from tiergate.aws.step_functions import StepFunctionsCascade

        remote_cascade = StepFunctionsCascade(settings.cascade_state_machine_arn)
    cascades = CascadeRunner(CascadeDeps(catalog, router, executor, admission), remote=remote_cascade)
    return Services(
        settings=settings, catalog=catalog, registry=registry, credentials=credentials, circuits=circuits,
        router=router, executor=executor, admission=admission, availability=availability,
        telemetry=telemetry or NoopTelemetry(), cascades=cascades, store=store, virtual_keys=virtual_keys,
        idempotency=idempotency, responses=responses, deferrer=deferrer, jobs=jobs,
        health_sources=(*plugins, *health_sources),
    )


def build_app(
    settings: Settings,
    catalog: Catalog | None = None,
    *,
    plugins: Sequence[Plugin] = (),
    extra_routers: Iterable[APIRouter] = (),
    on_startup: Iterable[Hook] = (),
    on_shutdown: Iterable[Hook] = (),
    **parts: Any,
) -> FastAPI:
    """The app for a home: :func:`build_services` (``parts`` are its keyword arguments),
    the plugins' routes and lifecycle hooks."""
    services = build_services(settings, catalog, plugins=plugins, **parts)
    routers = [*extra_routers, *(r for p in plugins for r in p.routers())]
    return create_app(services, extra_routers=routers,
                      on_startup=[*(p.start for p in plugins), *on_startup],
                      on_shutdown=[*on_shutdown, *(p.stop for p in plugins)])


# --- the cloud home -------------------------------------------------------------------


def _cloud_parts(settings: Settings | None) -> tuple[Settings, KeyResolver, Telemetry | None]:
    from tiergate.aws.secrets import cloud_settings_and_keys

    settings, keys = cloud_settings_and_keys(settings or Settings())
    telemetry: Telemetry | None = None
    if settings.in_lambda:  # in Lambda: EMF metrics, JSON logs, traces
        from tiergate.aws.telemetry import PowertoolsTelemetry

        telemetry = PowertoolsTelemetry(log_prompts=settings.log_prompts)
    return settings, keys, telemetry


def build_cloud_app(settings: Settings | None = None) -> FastAPI:
    """The app as both Lambda entry points serve it (Mangum and the Web Adapter's uvicorn):
    secrets from Secrets Manager, Powertools telemetry, no device plugins."""
    settings, keys, telemetry = _cloud_parts(settings)
    app = build_app(settings, credentials=keys, telemetry=telemetry)
    prewarm(app.state.services, snapstart=settings.snapstart)
    return app


def build_cascade_services(settings: Settings | None = None) -> Services:
    """The cascade task function's parts: the same catalog, admission and providers."""
    settings, keys, telemetry = _cloud_parts(settings)
    return build_services(settings, credentials=keys, telemetry=telemetry)


def prewarm(services: Services, *, snapstart: bool) -> None:
    """Build the provider adapters the catalog uses during init, so the first request does
    not pay for their imports (aiohttp, its TLS contexts). The LiteLLM adapter (``import
    litellm``: seconds) is built only under SnapStart, whose snapshot is taken after init
    once per published version; without SnapStart it stays lazy, off the init path."""
    for adapter in sorted({m.adapter for m in services.catalog.models}):
        if adapter == LITELLM and not snapstart:
            continue
        if services.registry.has(adapter):
            provider = services.registry.get(adapter)
            warm = getattr(provider, "warm", None)
            if warm is not None:
                warm()


def availability_report(services: Services) -> list[str]:
    """Human-readable lines: which models are usable and why the others are not."""
    lines = []
    for spec in services.catalog.models:
        why = services.availability(spec)
        mark = "ok " if why is None else "-- "
        lines.append(f"  {mark}tier {spec.tier}  {spec.name:<22} {spec.model:<40} {why or 'available'}")
    return lines

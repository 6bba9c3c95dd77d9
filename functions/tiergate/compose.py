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
from tiergate.cache.service import ResponseCache, SemanticLookup
from tiergate.cache.store import ExactStore
from tiergate.cascade.runner import CascadeRunner, RemoteCascade
from tiergate.cascade.service import CascadeDeps
from tiergate.config import catalog as catalog_mod
from tiergate.config.adapters import LITELLM, OPENAI_COMPATIBLE
from tiergate.config.catalog import Catalog, LearnedConfig
from tiergate.execution.circuit import CircuitBoard
from tiergate.execution.executor import Executor
from tiergate.limits.admission import Admission
from tiergate.limits.idempotency import Idempotency
from tiergate.limits.store_admission import StoreAdmission
from tiergate.limits.stored_responses import ResponseStore
from tiergate.limits.usage import MemoryLedger
from tiergate.limits.virtual_keys import KeyService
from tiergate.observe.prometheus import PrometheusMetrics
from tiergate.providers.credentials import EnvKeyResolver, KeyResolver
from tiergate.providers.registry import ProviderRegistry, default_registry
from tiergate.routing.affinity import Affinity
from tiergate.routing.learned.labels import LabelLog
from tiergate.routing.learned.serving import LearnedRouting, LearnedScorer
from tiergate.routing.plan import Router
from tiergate.services import Availability, Deferrer, EdgeStatus, HealthSource, JobLookup, Planner, Services
from tiergate.settings import Settings
from tiergate.stores import open_store
from tiergate.telemetry import FanoutTelemetry, NoopTelemetry, Telemetry


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

    def semantic_cache(self, settings: Settings, catalog: Catalog) -> SemanticLookup | None:
        """A semantic cache (an embedding model and a vector index), if this home has one."""
        return None


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
    semantic_cache: SemanticLookup | None = None,
    usage_log: MemoryLedger | None = None,
    edge: EdgeStatus | None = None,
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
    learned = learned_routing(catalog, settings)
    if router is None:
        router = Router(catalog, available=availability, circuit_open=lambda s: circuits.is_open(s.deployment_id),
                        learned=learned)
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
        idempotency = Idempotency(store, ttl_s=cfg.idempotency_ttl_s, wait_s=cfg.idempotency_wait_s,
                                  lease_s=cfg.idempotency_lease_s)
        responses = responses or ResponseStore(store, ttl_s=settings.responses_ttl_s)
    labels = None
    if store is not None and catalog.routing.learned is not None:
        labels = LabelLog(store, collect_prompts=catalog.routing.learned.collect_prompts,
                          retention_days=catalog.budgets.usage_retention_days)
    if remote_cascade is None and settings.cascade_state_machine_arn:
        from tiergate.aws.step_functions import StepFunctionsCascade

        remote_cascade = StepFunctionsCascade(settings.cascade_state_machine_arn)
    scorer = LearnedScorer(learned) if learned is not None else None
    cascades = CascadeRunner(CascadeDeps(catalog, router, executor, admission, scorer=scorer), remote=remote_cascade)
    for plugin in plugins:
        semantic_cache = semantic_cache or plugin.semantic_cache(settings, catalog)
    cache = build_cache(settings, catalog, keys_may_opt_in=virtual_keys is not None, semantic=semantic_cache,
                        client=getattr(store, "client", None))
    prometheus = PrometheusMetrics(models=catalog.groups, deployments=[m.deployment_id for m in catalog.models],
                                   policies=catalog.cascades) if settings.prometheus_metrics else None
    return Services(
        settings=settings, catalog=catalog, registry=registry, credentials=credentials, circuits=circuits,
        router=router, executor=executor, admission=admission, availability=availability,
        telemetry=build_telemetry(settings, prometheus, telemetry), cascades=cascades, store=store,
        virtual_keys=virtual_keys, idempotency=idempotency, responses=responses, deferrer=deferrer, jobs=jobs, cache=cache,
        learned=learned, labels=labels, affinity=Affinity(store),
        health_sources=(*plugins, *health_sources), prometheus=prometheus, usage_log=usage_log, edge=edge,
    )


def build_cache(settings: Settings, catalog: Catalog, *, keys_may_opt_in: bool,
                semantic: SemanticLookup | None = None, client: Any = None) -> ResponseCache | None:
    """The response cache, when the catalog configures one or virtual keys may opt in; its
    exact store is the home's kind (DynamoDB in the cloud, on the record store's boto3
    client when given: no second client at cold start; a SQLite file elsewhere)."""
    if not (catalog.cache.configured or keys_may_opt_in or semantic is not None):
        return None
    exact: ExactStore
    if settings.store == "dynamodb":
        from tiergate.cache.dynamodb import DynamoExactStore, create_table
        from tiergate.stores import dynamodb

        client = client or dynamodb.make_client(settings.dynamodb_endpoint_url)
        if settings.dynamodb_endpoint_url is not None:  # a local emulator: dev and tests
            create_table(client, settings.table_cache)
        exact = DynamoExactStore(client, settings.table_cache)
    else:
        from tiergate.cache.sqlite import SqliteExactStore

        bound = catalog.cache.exact.max_total_bytes if catalog.cache.exact else 256 * 1024 * 1024
        path = settings.cache_path or (":memory:" if settings.store == "memory" else settings.data_dir / "cache.sqlite3")
        exact = SqliteExactStore(path, max_total_bytes=bound)
    return ResponseCache(catalog.cache, catalog.by_id, exact=exact, semantic=semantic)


def build_telemetry(settings: Settings, prometheus: PrometheusMetrics | None, home: Telemetry | None) -> Telemetry:
    """Every home's sinks: Prometheus (scraped from ``/metrics``), the home's own (Powertools
    in Lambda), OpenTelemetry when an OTLP endpoint is set (imported only then)."""
    sinks: list[Telemetry] = [prometheus] if prometheus is not None else []
    if home is not None:
        sinks.append(home)
    if settings.otel_exporter_otlp_endpoint:
        try:
            from tiergate.observe.otel import OtelTelemetry
        except ImportError as e:  # a home built without the [otel] extra
            raise RuntimeError(f"OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is missing ({e}): "
                               "install tiergate[otel]") from e

        sinks.append(OtelTelemetry(settings.otel_exporter_otlp_endpoint, service_name=settings.otel_service_name,
                                   export_interval_s=settings.otel_metric_export_interval_s))
    if not sinks:
        return NoopTelemetry()
    return sinks[0] if len(sinks) == 1 else FanoutTelemetry(sinks)


def learned_routing(catalog: Catalog, settings: Settings | None = None) -> LearnedRouting | None:
    """The trained router of ``routing.learned.path`` (``TIERGATE_ROUTER_ARTIFACT`` wins);
    raises :class:`~tiergate.routing.learned.artifact.ArtifactError` (a ``CatalogError``)
    at startup for a missing, corrupt or unknown-model artifact."""
    cfg = catalog.routing.learned
    override = settings.router_artifact if settings is not None else None
    if override is not None:
        cfg = (cfg or LearnedConfig()).model_copy(update={"path": override})
    if cfg is None or cfg.path is None:
        return None
    return LearnedRouting(cfg, catalog)


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
    not pay for their imports. The LiteLLM adapter (``import litellm``: seconds)
    is built only under SnapStart, whose snapshot is taken after init once per published
    version; without SnapStart it stays lazy, off the init path. The CA bundle of the
    native adapter's TLS is loaded here only when one of its endpoints is https (an
    all-http catalog never needs it; see :mod:`tiergate.providers.http_client`)."""
    for adapter in sorted({m.adapter for m in services.catalog.models}):
        if adapter == LITELLM and not snapstart:
            continue
        if services.registry.has(adapter):
            provider = services.registry.get(adapter)
            warm = getattr(provider, "warm", None)
            if warm is not None:
                warm()
    if any(m.adapter == OPENAI_COMPATIBLE and not (m.api_base or "").lower().startswith("http:")
           for m in services.catalog.models) and services.registry.has(OPENAI_COMPATIBLE):
        from tiergate.providers.http_client import load_trust

        load_trust()


def availability_report(services: Services) -> list[str]:
    """Human-readable lines: which models are usable and why the others are not."""
    lines = []
    for spec in services.catalog.models:
        why = services.availability(spec)
        mark = "ok " if why is None else "-- "
        lines.append(f"  {mark}tier {spec.tier}  {spec.name:<22} {spec.model:<40} {why or 'available'}")
    return lines

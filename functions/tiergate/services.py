"""The per-app service container: everything a request needs, built once at startup by
:mod:`tiergate.compose` and passed to routes through ``app.state.services`` (no module
state). Optional parts are typed fields that are ``None`` when a home has no such part
(the edge has no record store; only the cloud has a state machine)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tiergate.cache.service import ResponseCache
from tiergate.cascade.runner import CascadeRunner
from tiergate.config.catalog import Catalog, ModelSpec
from tiergate.execution.circuit import CircuitBoard
from tiergate.execution.executor import Executor
from tiergate.limits.admission import Admission, Principal
from tiergate.limits.idempotency import Idempotency
from tiergate.limits.stored_responses import ResponseStore
from tiergate.limits.usage import MemoryLedger
from tiergate.limits.virtual_keys import KeyService
from tiergate.observe.prometheus import PrometheusMetrics
from tiergate.providers.credentials import KeyResolver, needs_key
from tiergate.providers.registry import ProviderRegistry
from tiergate.request import GatewayRequest
from tiergate.request.needs import RequestNeeds
from tiergate.routing.affinity import Affinity
from tiergate.routing.learned.labels import LabelLog
from tiergate.routing.learned.serving import LearnedRouting
from tiergate.routing.plan import RoutePlan
from tiergate.settings import Settings
from tiergate.stores.base import RecordStore
from tiergate.telemetry import Telemetry


class Planner(Protocol):
    """Turns a request into a plan (the core Router; the edge's offload router)."""

    def plan(self, req: GatewayRequest, principal: Principal, *, max_tier: int | None = None) -> RoutePlan: ...

    def tier_candidates(self, tier: int, principal: Principal, needs: RequestNeeds
                        ) -> tuple[list[ModelSpec], list[tuple[str, str]]]: ...


class Deferrer(Protocol):
    """Stores a request for later (the edge's offline queue); returns the job id."""

    async def defer(self, req: GatewayRequest, principal: Principal) -> str: ...


class JobLookup(Protocol):
    """Deferred jobs by id (the edge's queue), for ``GET /v1/jobs/{id}``."""

    async def get(self, job_id: str) -> Any: ...


class HealthSource(Protocol):
    def health_info(self) -> Mapping[str, Any]: ...


class EdgeStatus(Protocol):
    """The edge agent, as the dashboard and ``/metrics`` see it."""

    def edge_status(self) -> Mapping[str, Any]:
        """Now: ``queue`` (jobs by state), ``usage_outbox_pending``, ``sync_lag_s`` (age of the
        oldest unsynced usage record), ``cloud_up``, ``cloud_configured``, ``policy``."""
        ...

    def edge_history(self) -> list[Mapping[str, Any]]:
        """Samples over time (``ts`` plus the fields of :meth:`edge_status`), oldest first."""
        ...


class Availability:
    """Why a deployment cannot be used right now (adapter missing or unable to serve it,
    no key), or None."""

    def __init__(self, registry: ProviderRegistry, credentials: KeyResolver) -> None:
        self._registry, self._credentials = registry, credentials

    def __call__(self, spec: ModelSpec) -> str | None:
        why = self._registry.unavailable(spec)
        if why is not None:
            return why
        if needs_key(spec) and not self._credentials(spec):
            return f"no API key ({spec.api_key_env or spec.api_key_secret} not set)"
        return None


@dataclass(slots=True)
class Services:
    settings: Settings
    catalog: Catalog
    registry: ProviderRegistry
    credentials: KeyResolver
    circuits: CircuitBoard
    router: Planner
    executor: Executor
    admission: Admission
    availability: Availability
    telemetry: Telemetry
    cascades: CascadeRunner | None = None
    #: The record store and what lives on it (absent on the edge).
    store: RecordStore | None = None
    virtual_keys: KeyService | None = None
    idempotency: Idempotency | None = None
    #: Responses API state (``store: true``, ``previous_response_id``); on the store, or the
    #: edge's own SQLite file.
    responses: ResponseStore | None = None
    #: The response cache (None when the catalog configures none and no key may opt in).
    cache: ResponseCache | None = None
    #: The edge's offline queue.
    deferrer: Deferrer | None = None
    jobs: JobLookup | None = None
    #: The learned router (``routing.learned.path``), hot-reloaded.
    learned: LearnedRouting | None = None
    #: Session affinity (store-backed; in memory without a store).
    affinity: Affinity | None = None
    #: Labels from traffic (routing.learned set and a store present): feedback, cascade scores.
    labels: LabelLog | None = None
    #: Parts that add to ``GET /health`` (the local model, the edge agent).
    health_sources: tuple[HealthSource, ...] = ()
    #: The Prometheus sink among the telemetry sinks (``GET /metrics`` renders it).
    prometheus: PrometheusMetrics | None = None
    #: Usage records kept in memory where there is no store (the dashboard reads them).
    usage_log: MemoryLedger | None = None
    #: The edge agent's state for the dashboard's edge view and the edge gauges.
    edge: EdgeStatus | None = None

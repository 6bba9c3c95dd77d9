"""The per-app service container: everything a request needs, built once at startup
and passed to routes through ``app.state.services`` (no module-level state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tiergate.admission import Admission, Principal
from tiergate.catalog import Catalog, ModelSpec
from tiergate.execution.circuit import CircuitBoard
from tiergate.execution.executor import Executor
from tiergate.keys import KeyResolver
from tiergate.providers.base import ProviderRegistry
from tiergate.settings import Settings


class Planner(Protocol):
    def plan(self, body: dict[str, Any], principal: Principal, *, max_tier: int | None = None,
             hints: dict[str, str] | None = None, task_hint: str | None = None) -> Any: ...


class Deferrer(Protocol):
    """Stores a request for later (the edge's offline queue)."""

    async def defer(self, body: dict[str, Any], principal: Principal, hints: dict[str, str]) -> str: ...


class Telemetry(Protocol):
    def emit(self, record: dict[str, Any]) -> None: ...


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    registry: ProviderRegistry
    keys: KeyResolver
    circuits: CircuitBoard
    router: Planner
    executor: Executor
    admission: Admission
    availability: Callable[[ModelSpec], str | None]
    deferrer: Deferrer | None = None
    telemetry: Telemetry | None = None
    #: Objects with ``health_info() -> dict`` merged into ``GET /health`` (e.g. the edge).
    health_sources: list[Any] = field(default_factory=list)
    #: Free slots for optional subsystems (store, ledger, idempotency, cascades ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # Optional subsystems registered in ``extra`` read like attributes (services.store).
        try:
            return self.__dict__["extra"][name]
        except KeyError:
            raise AttributeError(name) from None

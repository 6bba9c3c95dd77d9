"""Building the app for a home from settings: catalog, providers, stores, plugins.

The optional parts are discovered, not required: the store-backed admission
(``tiergate.limits``), the cascade runner (``tiergate.routing.cascade_runner``) and the
edge plugin (``tiergate_edge.plugin``, present when the ``edge`` extra is installed).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI

from tiergate import catalog as catalog_mod
from tiergate.api.app import build_services, create_app
from tiergate.api.services import Telemetry
from tiergate.catalog import Catalog
from tiergate.keys import KeyResolver
from tiergate.providers.base import ProviderRegistry, default_registry
from tiergate.settings import Settings

log = logging.getLogger("tiergate")


def _optional(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        # Only a missing optional package is fine; a broken module of ours is not.
        if e.name and (e.name == module or module.startswith(e.name + ".") or not e.name.startswith("tiergate")):
            return None
        raise


def build_app(settings: Settings, catalog: Catalog | None = None, *, key_resolver: KeyResolver | None = None,
              registry: ProviderRegistry | None = None, with_plugins: bool = True,
              telemetry: Telemetry | None = None) -> FastAPI:
    catalog = catalog or catalog_mod.load(settings.config)
    registry = registry or default_registry()
    extra_routers: list[Any] = []
    health_sources: list[Any] = []
    startup: list[Any] = []
    shutdown: list[Any] = []
    extra: dict[str, Any] = {}
    if with_plugins and (edge := _optional("tiergate_edge.plugin")) is not None:
        health_sources.append(edge.register(registry, settings))
    admission = None
    if (limits := _optional("tiergate.limits.bootstrap")) is not None:
        admission, more = limits.build(settings, catalog)
        extra.update(more.get("extra", {}))
        extra_routers += more.get("routers", [])
    services = build_services(settings, catalog, registry=registry, admission=admission, telemetry=telemetry,
                              key_resolver=key_resolver, health_sources=health_sources, extra=extra)
    if (cascades := _optional("tiergate.routing.cascade_runner")) is not None:
        cascades.install(services)
    return create_app(services, extra_routers=extra_routers, on_startup=startup, on_shutdown=shutdown)


def availability_report(app: FastAPI) -> list[str]:
    """Human-readable lines: which models are usable and why the others are not."""
    s = app.state.services
    lines = []
    for spec in s.catalog.models:
        why = s.availability(spec)
        mark = "ok " if why is None else "-- "
        lines.append(f"  {mark}tier {spec.tier}  {spec.name:<22} {spec.model:<40} {why or 'available'}")
    return lines

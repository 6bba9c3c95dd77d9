"""The hook ``tiergate.bootstrap.build_app`` discovers: the store-backed admission, the
services the limits routes read, and those routes.

``build(settings, catalog)`` returns ``(admission, {"extra": ..., "routers": ...})``;
``extra`` lands on ``app.state.services`` as ``store``, ``virtual_keys`` and
``idempotency``. The admission owns the store: the app's shutdown (``admission.aclose``)
drains background settlements and closes it.
"""

from __future__ import annotations

from typing import Any

from tiergate.api.routes import budget, keys, metrics, usage
from tiergate.catalog import Catalog
from tiergate.limits.admission import StoreAdmission
from tiergate.limits.idempotency import Idempotency
from tiergate.limits.keys import KeyService
from tiergate.settings import Settings
from tiergate.stores import open_store


def build(settings: Settings, catalog: Catalog) -> tuple[StoreAdmission, dict[str, Any]]:
    # A local emulator endpoint (dev, tests) gets its tables created; in the cloud CDK owns them.
    store = open_store(settings, create_tables=settings.dynamodb_endpoint_url is not None)
    vkeys = KeyService(store, cache_ttl_s=settings.key_cache_ttl_s)
    # SQLite settles in one local transaction; DynamoDB settles directly (Lambda has no
    # durable disk for a journal). A long-running host on DynamoDB may pass an Outbox.
    admission = StoreAdmission(settings, catalog, store, keys=vkeys, owns_store=True)
    cfg = catalog.budgets
    idem = Idempotency(store, ttl_s=cfg.idempotency_ttl_s, wait_s=cfg.idempotency_wait_s)
    return admission, {
        "extra": {"store": store, "virtual_keys": vkeys, "idempotency": idem},
        "routers": [keys.router, usage.router, budget.router, metrics.router],
    }

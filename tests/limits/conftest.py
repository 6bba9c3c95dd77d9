"""Fixtures for the budgets/rate-limit/keys suite: the same tests over every store."""

from __future__ import annotations

from typing import Any

from tests.support.stores import MASTER  # noqa: F401  (tests import it from here)
from tiergate.config.catalog import CatalogFile, resolve


def make_catalog(budgets: dict[str, Any] | None = None, **model_kw: Any):
    """Two cheap deployments on tiers 0 and 1 (prices in USD per 1M tokens)."""
    models = [
        {"name": "small", "model": "openai/small", "tier": 0, "input_cost_per_mtok": 1.0,
         "output_cost_per_mtok": 2.0, **model_kw},
        {"name": "big", "model": "openai/big", "tier": 1, "input_cost_per_mtok": 10.0,
         "output_cost_per_mtok": 20.0},
    ]
    return resolve(CatalogFile.model_validate({"models": models, "budgets": budgets or {}}))

"""Shared fixtures. Each area's fixtures live in a plugin module under tests/support/."""

import os

# Never let litellm fetch its cost map over the network, in any test process.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

pytest_plugins = [
    "tests.support.moto_server",
    "tests.support.upstream_fixtures",
    "tests.support.gateway",
    "tests.support.dynalite",
]

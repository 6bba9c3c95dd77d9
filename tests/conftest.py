"""Shared fixtures. Each area's fixtures live in a plugin module under tests/support/."""

import os

# Never let litellm fetch its cost map over the network, in any test process.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# jsii prints an end-of-life banner for Node 20 on every CDK import.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

pytest_plugins = [
    "tests.support.moto_server",
    "tests.support.upstream_fixtures",
    "tests.support.gateway",
    "tests.support.dynalite",
    "tests.support.stores",
]

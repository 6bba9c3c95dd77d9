"""A three-tier catalog over the upstream simulator with one cascade policy per mode."""

from __future__ import annotations

import pytest

from tiergate.config import catalog as catalog_mod

CATALOG = """
models:
  - name: small
    model: openai/small-0
    adapter: openai-compatible
    tier: 0
    api_base: "{sim}"
    input_cost_per_mtok: 0.1
    output_cost_per_mtok: 0.4
    capabilities: [json]
  - name: mid
    model: openai/mid-1
    adapter: openai-compatible
    tier: 1
    api_base: "{sim}"
    input_cost_per_mtok: 1
    output_cost_per_mtok: 4
    capabilities: [json]
  - name: big
    model: openai/big-2
    adapter: openai-compatible
    tier: 2
    api_base: "{sim}"
    input_cost_per_mtok: 10
    output_cost_per_mtok: 40
    capabilities: [json]
routing:
  auto_cascade: {coding: default}
reliability:
  max_attempts_per_deployment: 1
  backoff_base_s: 0.01
  attempt_timeout_s: 5
  deadline_s: 20
cascades:
  default: {tiers: [0, 1, 2], threshold: 0.7}
  capped: {tiers: [0, 1, 2], max_cost_usd: 0.005, estimate_output_tokens: 200}
  refine: {mode: refine, models: [small, big]}
  fan: {mode: parallel, tiers: [0, 1, 2]}
  judged: {tiers: [0, 1], judge: {model: big, weight: 0.5}}
"""

GOOD_PY = "```python\ndef add(a, b):\n    return a + b\n```"
BROKEN_PY = "```python\ndef add(a, b)\n    return a + b\n```"
CODE_ASK = [{"role": "user", "content": "Write a Python function that adds two numbers"}]


@pytest.fixture
def sim_catalog(sim):
    return catalog_mod.parse(CATALOG.replace("{sim}", sim.openai_base), source="test")


@pytest.fixture
def services(sim_catalog, tmp_path):
    from tiergate.compose import build_services
    from tiergate.settings import Settings

    return build_services(Settings(data_dir=tmp_path, store="memory"), sim_catalog)


@pytest.fixture
def gw_client(gateway_factory):
    from openai import OpenAI

    url, app = gateway_factory(CATALOG)
    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0), url, app

"""A catalog over the upstream simulator: three tiers, two tier-1 deployments, a small
context model, an Anthropic model through LiteLLM, fast retries for tests."""

from __future__ import annotations

import pytest

CATALOG = """
models:
  - name: cheap-coder
    model: openai/coder-0
    adapter: openai-compatible
    tier: 0
    api_base: "{sim}"
    input_cost_per_mtok: 0.05
    output_cost_per_mtok: 0.10
    context_window: 2000
    capabilities: [json]
  - name: fast
    model: openai/fast-a
    adapter: openai-compatible
    tier: 1
    api_base: "{sim}"
    api_key_env: SIM_KEY_A
    input_cost_per_mtok: 0.15
    output_cost_per_mtok: 0.60
    capabilities: [tools, json]
  - name: fast-b
    model: openai/fast-b
    adapter: openai-compatible
    tier: 1
    api_base: "{sim}"
    input_cost_per_mtok: 0.20
    output_cost_per_mtok: 0.80
    capabilities: [tools, json]
  - name: sonnet
    model: anthropic/claude-sim
    adapter: litellm
    tier: 2
    api_base: "{sim_root}"
    api_key_env: SIM_KEY_A
    input_cost_per_mtok: 3
    output_cost_per_mtok: 15
    capabilities: [tools, json]
  - name: premium
    model: openai/premium-3
    adapter: openai-compatible
    tier: 3
    api_base: "{sim}"
    input_cost_per_mtok: 2.5
    output_cost_per_mtok: 10
    capabilities: [tools, json, vision]
aliases:
  writer: sonnet
  critic: premium
  coder: tier:0
routing:
  fallback_up_tiers: 1
reliability:
  max_attempts_per_deployment: 2
  backoff_base_s: 0.01
  backoff_max_s: 0.05
  max_retry_after_s: 2
  attempt_timeout_s: 1.5
  deadline_s: 20
  circuit_failure_threshold: 3
  circuit_cooldown_s: 0.5
"""


@pytest.fixture
def gw(gateway_factory, monkeypatch):
    """(base_url, app) of a gateway over the simulator, no master key."""
    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    return gateway_factory(CATALOG)


@pytest.fixture
def client(gw):
    from openai import OpenAI

    return OpenAI(base_url=gw[0] + "/v1", api_key="unused", max_retries=0)

"""Provider conformance fixtures.

The simulator fixtures come from the shared plugin module (imported here until the root
conftest registers ``tests.support.upstream_fixtures`` in ``pytest_plugins``).

``case`` parametrizes a test over every adapter/wire-format pair: the native
``openai-compatible`` adapter, and LiteLLM speaking OpenAI and Anthropic.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from tests.support.upstream import UpstreamSim
from tiergate.config.catalog import ModelSpec
from tiergate.providers.base import Provider, ProviderCall

_names = itertools.count(1)


@dataclass(frozen=True)
class Case:
    id: str
    adapter: str  # "openai-compatible" | "litellm"
    wire: str  # "openai" | "anthropic"

    def provider(self) -> Provider:
        if self.adapter == "litellm":
            from tiergate.providers.litellm_adapter import LiteLLMProvider

            return LiteLLMProvider()
        from tiergate.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider()

    def deployment(self, simulator: UpstreamSim, wire_model: str | None = None, *, api_base: str | None = None,
                   **extra) -> ModelSpec:
        """A deployment whose wire model name is unique to the test (or ``wire_model``)."""
        wire_model = wire_model or f"m{next(_names)}-{self.id}"
        if self.wire == "anthropic":
            model, base = f"anthropic/{wire_model}", api_base or simulator.anthropic_base
        else:
            model, base = f"openai/{wire_model}", api_base or simulator.openai_base
        return ModelSpec(name=wire_model, id=f"dep-{wire_model}", model=model, adapter=self.adapter, tier=1,
                         api_base=base, **extra)

    @property
    def path(self) -> str:
        return "/v1/messages" if self.wire == "anthropic" else "/v1/chat/completions"


CASES = [Case("native", "openai-compatible", "openai"), Case("litellm-openai", "litellm", "openai"),
         Case("litellm-anthropic", "litellm", "anthropic")]


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


@pytest.fixture
async def provider(case: Case):
    p = case.provider()
    try:
        yield p
    finally:
        await p.aclose()


def call_for(dep: ModelSpec, text: str = "hello simulator", *, timeout_s: float = 5.0, api_key: str | None = "sk-test",
             **body) -> ProviderCall:
    return ProviderCall(deployment=dep, body={"messages": [{"role": "user", "content": text}], **body},
                        timeout_s=timeout_s, api_key=api_key)

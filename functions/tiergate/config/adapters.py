"""The adapters a catalog entry may name, and what each implies when the file is silent.

This is the one declaration of adapter names: the catalog validates ``adapter:`` against
it and fills defaults from it; :mod:`tiergate.providers.registry` registers a provider
under each name (the edge registers ``llama-cpp``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LITELLM = "litellm"
OPENAI_COMPATIBLE = "openai-compatible"
LLAMA_CPP = "llama-cpp"
#: The local embedder (a static embedding model shipped in the ``wordllama`` package).
WORDLLAMA = "wordllama"

Adapter = Literal["litellm", "openai-compatible", "llama-cpp", "wordllama"]


@dataclass(frozen=True, slots=True)
class AdapterDefaults:
    #: Capabilities assumed when neither the file nor LiteLLM's cost map says.
    capabilities: frozenset[str]
    #: Prices and limits come from LiteLLM's cost map (a hosted model id) when the file is silent.
    uses_cost_map: bool
    #: A deployment naming ``api_key_env``/``api_key_secret`` is unusable without that key.
    needs_key: bool
    #: What to install when the adapter is missing.
    install_hint: str


ADAPTERS: dict[str, AdapterDefaults] = {
    LITELLM: AdapterDefaults(frozenset({"tools", "json"}), uses_cost_map=True, needs_key=True,
                             install_hint="pip install 'tiergate[litellm]'"),
    OPENAI_COMPATIBLE: AdapterDefaults(frozenset({"tools", "json"}), uses_cost_map=True, needs_key=True,
                                       install_hint="part of the core install"),
    LLAMA_CPP: AdapterDefaults(frozenset({"json", "json_schema", "tools"}), uses_cost_map=False, needs_key=False,
                               install_hint="pip install 'tiergate[edge]'"),
    WORDLLAMA: AdapterDefaults(frozenset({"embeddings"}), uses_cost_map=False, needs_key=False,
                               install_hint="pip install 'tiergate[edge]'"),
}

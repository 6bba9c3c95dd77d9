"""Where provider API keys come from: the environment variable a catalog entry names,
or (in the cloud) a secret. Resolvers are passed in; nothing caches keys globally."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Protocol

from tiergate.config.adapters import ADAPTERS
from tiergate.config.catalog import ModelSpec


class KeyResolver(Protocol):
    def __call__(self, spec: ModelSpec) -> str | None: ...


def needs_key(spec: ModelSpec) -> bool:
    return ADAPTERS[spec.adapter].needs_key and bool(spec.api_key_env or spec.api_key_secret)


class EnvKeyResolver:
    """Reads ``api_key_env`` from an environment mapping (``os.environ`` by default);
    optionally falls back to a secret lookup for ``api_key_secret``."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        secret_lookup: Callable[[str], str | None] | None = None,
    ) -> None:
        self._env = os.environ if environ is None else environ
        self._secret = secret_lookup

    def __call__(self, spec: ModelSpec) -> str | None:
        if spec.api_key_env:
            v = self._env.get(spec.api_key_env)
            if v:
                return v
        if spec.api_key_secret and self._secret is not None:
            return self._secret(spec.api_key_secret)
        return None

"""The catalog: models, tiers, prices, aliases and policies, as validated data.

Two stages, as in TensorZero: :class:`CatalogFile` is the raw YAML shape (unknown
fields rejected), :func:`resolve` turns it into the frozen runtime :class:`Catalog`
(deployment ids assigned, prices and context windows filled from the shipped price
snapshot (:mod:`tiergate.config.pricing`) where the file is silent, aliases checked).

A packaged default catalog (``default_catalog.yaml``) serves when no file is given;
a user file replaces it (``--config`` / ``TIERGATE_CONFIG``).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator

from tiergate.config import diagnostics, pricing
from tiergate.config.adapters import ADAPTERS, LITELLM, OPENAI_COMPATIBLE, Adapter
from tiergate.config.base import MAX_TIER, Capability, FrozenDict, Strict, TaskType, Tier
from tiergate.config.budgets import BudgetsConfig
from tiergate.config.cache import CacheConfig
from tiergate.config.cascades import CascadePolicy
from tiergate.errors import InvalidRequest


class ModelSpec(Strict):
    """One deployment: a model reachable through one adapter at one endpoint."""

    name: str = Field(min_length=1, description="What clients put in 'model'; repeated names form a group")
    model: str = Field(min_length=1, description="LiteLLM model id (or a GGUF path for llama-cpp)")
    id: str | None = Field(None, description="Deployment id; defaults to name, or name#N within a group")
    adapter: Adapter = "litellm"
    tier: Tier
    api_base: str | None = None
    api_key_env: str | None = None
    api_key_secret: str | None = Field(None, description="Key name inside the provider-keys secret (cloud)")
    upstream_model: str | None = Field(None, description="Model name sent upstream (openai-compatible)")
    input_cost_per_mtok: float | None = Field(None, ge=0)
    output_cost_per_mtok: float | None = Field(None, ge=0)
    context_window: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    capabilities: frozenset[Capability] | None = None
    task_types: frozenset[TaskType] = frozenset()
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0)
    weight: int = Field(1, ge=1)
    chat_format: str | None = Field(None, description="llama.cpp chat format when the GGUF has no template")
    extra_headers: Mapping[str, str] = Field(default_factory=dict)
    drop_params: frozenset[str] | None = Field(
        None, description="Request parameters this endpoint refuses, removed before the call; default: "
                          "top_k for OpenAI's own API (see refused_params)")

    @property
    def deployment_id(self) -> str:
        assert self.id is not None  # set by resolve()
        return self.id

    @property
    def wire_model(self) -> str:
        """The model name an OpenAI-compatible endpoint expects."""
        if self.upstream_model:
            return self.upstream_model
        # LiteLLM's convention: "openai/<name>" on a custom api_base sends "<name>".
        return self.model.removeprefix("openai/")

    @property
    def price_known(self) -> bool:
        return self.input_cost_per_mtok is not None and self.output_cost_per_mtok is not None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * (self.input_cost_per_mtok or 0.0)
                + completion_tokens * (self.output_cost_per_mtok or 0.0)) / 1_000_000

    def has(self, capability: str) -> bool:
        return self.capabilities is not None and capability in self.capabilities


class LearnedConfig(Strict):
    """``routing.learned``: the trained router artifact and how ``auto`` uses it (issue 10)."""

    #: The artifact directory (``tiergate router train --out``); None collects labels only.
    path: Path | None = None
    #: ``auto`` takes the cheapest candidate predicted to reach this share of the best
    #: candidate's quality (calibrated on held-out training data); requests may tighten it.
    quality_target: float = Field(0.95, gt=0, le=1)
    #: Store prompt text with the labels (for ``tiergate router export``); off by default.
    collect_prompts: bool = False


class RoutingConfig(Strict):
    default_model: str = "auto"
    #: The tier ``auto`` starts from for each task type (the cheapest tier expected to do it well).
    task_tiers: dict[TaskType, Tier] = Field(
        default_factory=lambda: {"coding": 0, "general": 1, "analysis": 2, "premium": 3, "realtime": 4}
    )
    #: Extra keywords per task type, added to the built-in English and Japanese lists.
    keywords: dict[TaskType, list[str]] = Field(default_factory=dict)
    #: Fraction of a model's context window kept free beyond prompt + max output.
    context_headroom: float = Field(0.05, ge=0, lt=1)
    #: When ``auto`` should run a cascade policy instead of a single tier (task type -> policy).
    auto_cascade: dict[TaskType, str] = Field(default_factory=dict)
    #: How many tiers above the chosen one the fallback chain may climb.
    fallback_up_tiers: int = Field(1, ge=0, le=MAX_TIER)
    #: Learned routing (``auto`` from a trained artifact; labels from traffic).
    learned: LearnedConfig | None = None


class ReliabilityConfig(Strict):
    max_attempts_per_deployment: int = Field(2, ge=1, le=10)
    backoff_base_s: float = Field(0.25, ge=0)
    backoff_max_s: float = Field(8.0, ge=0)
    #: Longest provider Retry-After we will wait in-request; longer ones move to the next deployment.
    max_retry_after_s: float = Field(10.0, ge=0)
    attempt_timeout_s: float = Field(60.0, gt=0)
    deadline_s: float = Field(180.0, gt=0)
    circuit_failure_threshold: int = Field(5, ge=1)
    circuit_cooldown_s: float = Field(30.0, gt=0)


class CatalogFile(Strict):
    """The YAML file's shape. Every section is optional except ``models``."""

    models: list[ModelSpec] = Field(min_length=1)
    aliases: dict[str, str] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)
    cascades: dict[str, CascadePolicy] = Field(default_factory=dict)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k == "auto" or k.startswith(("tier:", "cascade")):
                raise ValueError(f"alias {k!r} shadows a reserved model name")
        return v


class Catalog(Strict):
    """The resolved, frozen runtime catalog."""

    models: tuple[ModelSpec, ...]
    aliases: dict[str, str]
    routing: RoutingConfig
    reliability: ReliabilityConfig
    cascades: dict[str, CascadePolicy]
    budgets: BudgetsConfig
    cache: CacheConfig = CacheConfig()
    source: str = "default"

    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))

    @cached_property
    def groups(self) -> dict[str, tuple[ModelSpec, ...]]:
        out: dict[str, list[ModelSpec]] = {}
        for m in self.models:
            out.setdefault(m.name, []).append(m)
        return FrozenDict({k: tuple(v) for k, v in out.items()})

    @cached_property
    def by_id(self) -> dict[str, ModelSpec]:
        return FrozenDict({m.deployment_id: m for m in self.models})

    def tiers(self) -> list[int]:
        return sorted({m.tier for m in self.models})

    def in_tier(self, tier: int) -> tuple[ModelSpec, ...]:
        return tuple(m for m in self.models if m.tier == tier)

    def resolve_alias(self, name: str) -> str:
        seen = set()
        while name in self.aliases:
            if name in seen:  # pragma: no cover - rejected by resolve()
                raise InvalidRequest(f"alias loop at {name!r}")
            seen.add(name)
            name = self.aliases[name]
        return name


def _fill(spec: ModelSpec, deployment_id: str) -> ModelSpec:
    """Assign the id and fill prices/limits from the price snapshot where the file is silent.
    A hosted model nobody knows the price of keeps ``None`` (shown as unknown, never $0);
    a local one (an adapter without a cost map) costs nothing."""
    defaults = ADAPTERS[spec.adapter]
    known = pricing.lookup(spec.model) if defaults.uses_cost_map else None
    free = None if defaults.uses_cost_map else 0.0
    upd: dict[str, Any] = {"id": spec.id or deployment_id}
    if spec.input_cost_per_mtok is None:
        upd["input_cost_per_mtok"] = known.input_cost_per_mtok if known else free
    if spec.output_cost_per_mtok is None:
        upd["output_cost_per_mtok"] = known.output_cost_per_mtok if known else free
    if spec.context_window is None and known and known.context_window:
        upd["context_window"] = known.context_window
    if spec.max_output_tokens is None and known and known.max_output_tokens:
        upd["max_output_tokens"] = known.max_output_tokens
    caps = spec.capabilities
    if caps is None:
        caps = known.capabilities if known and known.capabilities else defaults.capabilities
    upd["capabilities"] = frozenset(caps) | (native_dialects(spec) if "embeddings" not in caps else frozenset())
    if spec.drop_params is None:
        upd["drop_params"] = refused_params(spec)
    return spec.model_copy(update=upd)


def _budgeted(b: BudgetsConfig) -> bool:
    scopes = [b.global_, b.tenant_defaults, *b.tenants.values()]
    return any(x is not None for s in scopes for x in (s.max_cost_per_request_usd, s.daily_usd, s.monthly_usd))


class CatalogProblems(ValueError):
    """Stage two found cross-reference problems; ``problems`` holds (location, message) pairs."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(m for _, m in problems))
        self.problems = problems


def native_dialects(spec: ModelSpec) -> frozenset[str]:
    """What an endpoint speaks besides chat, known from the model id alone: Anthropic's own
    API speaks Messages, OpenAI's own speaks Responses. (Other endpoints declare it with
    the ``messages_api`` / ``responses_api`` capabilities.)"""
    if spec.adapter != LITELLM:
        return frozenset()
    if spec.model.startswith("anthropic/"):
        return frozenset({"messages_api"})
    if spec.model.startswith("openai/") and spec.api_base is None:
        return frozenset({"responses_api"})
    return frozenset()


#: Parameters the doors may carry into a chat body that OpenAI's chat API does not define:
#: Anthropic's ``top_k`` (the Messages door). llama.cpp, vLLM, llama-server, Together and
#: OpenRouter take it; LiteLLM maps it for providers that have it (Anthropic, Gemini,
#: Bedrock); OpenAI's own API answers 400 "Unrecognized request argument supplied: top_k",
#: and LiteLLM (1.106) forwards it there even with ``drop_params`` (as a provider-specific
#: parameter), so it is dropped by us.
NOT_OPENAI_CHAT = frozenset({"top_k"})
OPENAI_HOST = "api.openai.com"  # and its subdomains (<region>.privatelink.api.openai.com)
AZURE_OPENAI_SUFFIX = ".openai.azure.com"


def refused_params(spec: ModelSpec) -> frozenset[str]:
    """What a deployment's endpoint refuses, known from its model id and ``api_base`` when
    the file does not say (``drop_params``): OpenAI's own API and Azure OpenAI refuse
    :data:`NOT_OPENAI_CHAT`; every other endpoint is sent what the request carries."""
    if spec.adapter == LITELLM:
        if spec.model.startswith("azure/"):
            return NOT_OPENAI_CHAT
        if not spec.model.startswith("openai/"):
            return frozenset()
    elif spec.adapter != OPENAI_COMPATIBLE:
        return frozenset()  # llama.cpp and the local embedder take top_k themselves
    host = (urllib.parse.urlsplit(spec.api_base).hostname or "") if spec.api_base else OPENAI_HOST
    openai = host == OPENAI_HOST or host.endswith("." + OPENAI_HOST) or host.endswith(AZURE_OPENAI_SUFFIX)
    return NOT_OPENAI_CHAT if openai else frozenset()


def resolve(raw: CatalogFile, *, source: str = "default") -> Catalog:
    """Stage two: ids, defaults from the cost map, and cross-references checked (all
    problems reported at once, each with where it is)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    counts: dict[str, int] = {}
    for m in raw.models:
        counts[m.name] = counts.get(m.name, 0) + 1
    seen_index: dict[str, int] = {}
    models: list[ModelSpec] = []
    for m in raw.models:
        i = seen_index.get(m.name, 0)
        seen_index[m.name] = i + 1
        models.append(_fill(m, m.name if counts[m.name] == 1 else f"{m.name}#{i + 1}"))
    ids = [m.deployment_id for m in models]
    for n, i in enumerate(ids):
        if ids.count(i) > 1 and ids.index(i) != n:
            problems.append((("models", n, "id"), f"models.{n}: duplicate deployment id {i!r}"))
    if _budgeted(raw.budgets):
        for n, m in enumerate(models):
            if m.input_cost_per_mtok is None or m.output_cost_per_mtok is None:
                problems.append((("models", n), f"models.{n} ({m.name}): no known price for {m.model!r} and a budget "
                                 "is configured: set input_cost_per_mtok and output_cost_per_mtok (billed at $0, "
                                 "budgets would never charge it)"))
    names = {m.name for m in models}
    for alias, target in raw.aliases.items():
        if alias in names:
            problems.append((("aliases", alias), f"alias {alias!r} has the same name as a model"))
        elif not (target in names or target in raw.aliases or target == "auto"
                  or target.startswith(("tier:", "cascade"))):
            problems.append((("aliases", alias), f"alias {alias!r} points to unknown model {target!r}"
                             + _did_you_mean(target, names | set(raw.aliases))))
    problems += [(("aliases", a), msg) for a, msg in _alias_loops(raw.aliases)]
    for task, policy in raw.routing.auto_cascade.items():
        if policy not in raw.cascades:
            known = ", ".join(sorted(raw.cascades)) or "none: add a 'cascades:' section"
            problems.append((("routing", "auto_cascade", task),
                             f"routing.auto_cascade.{task} names unknown cascade policy {policy!r} (known: {known})"))
    if problems:
        raise CatalogProblems(problems)
    cascades = dict(raw.cascades)
    if DEFAULT_CASCADE not in cascades:
        # ``model: "cascade"`` works on any catalog: escalate through its tiers, cheapest first.
        cascades[DEFAULT_CASCADE] = CascadePolicy(mode="escalate", tiers=sorted({m.tier for m in models}))
    return Catalog(
        models=tuple(models), aliases=dict(raw.aliases), routing=raw.routing,
        reliability=raw.reliability, cascades=cascades, budgets=raw.budgets, cache=raw.cache,
        source=source,
    )


def _did_you_mean(word: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _alias_loops(aliases: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for start in aliases:
        seen, name = set(), start
        while name in aliases:
            if name in seen:
                out.append((start, f"alias loop through {start!r}"))
                break
            seen.add(name)
            name = aliases[name]
    return out


def check_files(catalog: Catalog) -> list[str]:
    """Local model files a catalog names that do not exist (``tiergate config check``).
    Only path-like values are checked: ``bundled:`` references and names added with
    ``tiergate models add`` are resolved by the edge at serve time."""
    out = []
    for n, m in enumerate(catalog.models):
        if m.adapter != "llama-cpp" or m.model.startswith("bundled:"):
            continue
        if ("/" in m.model or m.model.endswith(".gguf")) and not Path(m.model).expanduser().is_file():
            out.append(f"models.{n} ({m.name}): model file {m.model} does not exist")
    return out


#: The policy ``model: "cascade"`` names; built in when the catalog has none.
DEFAULT_CASCADE = "default"


class CatalogError(ValueError):
    """The catalog file is unreadable or invalid; the message says where."""


def parse(text: str, *, source: str) -> Catalog:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CatalogError(diagnostics.yaml_error(source, e)) from None
    if not isinstance(data, dict):
        raise CatalogError(f"{source}: expected a mapping with a 'models' list")
    try:
        return resolve(CatalogFile.model_validate(data), source=source)
    except ValidationError as e:
        lines = diagnostics.validation_lines(source, text, CatalogFile, e)
        raise CatalogError(_summary(source, lines)) from None
    except CatalogProblems as e:
        raise CatalogError(_summary(source, diagnostics.located(source, text, e.problems))) from None
    except ValueError as e:
        raise CatalogError(f"{source}: invalid catalog: {e}") from None


def _summary(source: str, lines: list[str]) -> str:
    n = len(lines)
    return f"{source}: invalid catalog ({n} problem{'s' if n != 1 else ''}):\n" + "\n".join("  " + ln for ln in lines)


def load(path: str | os.PathLike[str] | None = None) -> Catalog:
    """Load a user catalog file, or the packaged default when ``path`` is None."""
    if path is None:
        text = resources.files("tiergate.config").joinpath("default_catalog.yaml").read_text()
        return parse(text, source="default")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise CatalogError(f"cannot read catalog {p}: {e.strerror}") from None
    return anchor_paths(parse(text, source=str(p)), p.parent)


def anchor_paths(cat: Catalog, base: Path) -> Catalog:
    """A relative ``routing.learned.path`` is relative to the catalog file's directory."""
    learned = cat.routing.learned
    if learned is None or learned.path is None or learned.path.is_absolute():
        return cat
    routing = cat.routing.model_copy(update={"learned": learned.model_copy(update={"path": base / learned.path})})
    return cat.model_copy(update={"routing": routing})

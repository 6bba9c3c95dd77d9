"""The catalog: the issue's minimal shape as is, strict validation, defaults from LiteLLM's cost map."""

from __future__ import annotations

import pytest

from tiergate.config.catalog import CatalogError, load, parse

MINIMAL = """
models:
  - name: fast                      # what clients put in "model"
    model: openai/gpt-4o-mini       # LiteLLM model id
    adapter: openai-compatible      # or litellm (the default)
    tier: 1
    api_base: http://127.0.0.1:9000/v1
    api_key_env: OPENAI_API_KEY
    input_cost_per_mtok: 0.15       # USD per 1M tokens
    output_cost_per_mtok: 0.60
"""


def test_minimal_shape_is_accepted_as_is():
    cat = parse(MINIMAL, source="t")
    (m,) = cat.models
    assert (m.name, m.deployment_id, m.tier, m.adapter, m.wire_model) == ("fast", "fast", 1, "openai-compatible", "gpt-4o-mini")
    assert m.cost_usd(1_000_000, 1_000_000) == pytest.approx(0.75)
    # Unset limits come from LiteLLM's cost map.
    assert m.context_window == 128000 and "tools" in m.capabilities


def test_prices_default_from_cost_map():
    cat = parse("models: [{name: s, model: anthropic/claude-sonnet-4-5, tier: 2}]", source="t")
    assert (cat.models[0].input_cost_per_mtok, cat.models[0].output_cost_per_mtok) == (3.0, 15.0)


@pytest.mark.parametrize("text, fragment", [
    ("models: [{name: a, model: m, tier: 1, colour: red}]", "models.0.colour"),
    ("models: [{name: a, model: m, tier: 7}]", "models.0.tier"),
    ("models: [{name: a, model: m, tier: 1, adapter: carrier-pigeon}]", "models.0.adapter"),
    ("models: []", "models"),
    ("modles: [{name: a, model: m, tier: 1}]", "modles"),
    ("models: [{name: a, model: m, tier: 1}]\naliases: {b: nowhere}", "unknown model"),
    ("models: [{name: a, model: m, tier: 1}]\naliases: {b: c, c: b}", "alias loop"),
    ("models: [{name: a, model: m, tier: 1}]\naliases: {auto: a}", "reserved"),
    ("models: [{name: a, model: m, tier: 1}]\nrouting: {auto_cascade: {coding: ghost}}", "ghost"),
    ("models: [oops", "not valid YAML"),
    ("- just a list", "mapping"),
])
def test_invalid_catalogs_say_where(text, fragment):
    with pytest.raises(CatalogError) as ei:
        parse(text, source="cfg.yaml")
    assert fragment in str(ei.value) and "cfg.yaml" in str(ei.value)


def test_groups_get_distinct_deployment_ids():
    cat = parse("models: [{name: g, model: a, tier: 1}, {name: g, model: b, tier: 1}]", source="t")
    assert [m.deployment_id for m in cat.models] == ["g#1", "g#2"]
    assert len(cat.groups["g"]) == 2


def test_packaged_default_catalog_loads():
    cat = load()
    assert cat.source == "default"
    assert cat.tiers() == [0, 1, 2, 3, 4]
    assert cat.by_id["local"].adapter == "llama-cpp"
    assert cat.resolve_alias("writer") == "claude-sonnet"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load(tmp_path / "nope.yaml")


def test_the_catalog_is_deeply_immutable():
    from tiergate.config import catalog as catalog_mod

    cat = catalog_mod.parse("""
models:
  - {name: a, model: openai/a, tier: 1, extra_headers: {x-a: "1"}}
aliases: {w: a}
routing: {keywords: {coding: [terraform]}}
cascades: {default: {tiers: [1], models: [a]}}
""", source="t")
    mutations = [
        lambda: cat.aliases.__setitem__("x", "a"),
        lambda: cat.routing.task_tiers.update({"coding": 3}),
        lambda: cat.routing.keywords["coding"].append("helm"),
        lambda: cat.cascades["default"].models.append("b"),
        lambda: cat.models[0].extra_headers.pop("x-a"),
        lambda: cat.groups.clear(),
        lambda: cat.by_id.setdefault("b", cat.models[0]),
    ]
    for mutate in mutations:
        with pytest.raises(TypeError, match="immutable"):
            mutate()
    with pytest.raises(ValueError):
        cat.models[0].tier = 2  # frozen models, as before
    assert cat.model_dump()["aliases"] == {"w": "a"}  # still plain data for serialization

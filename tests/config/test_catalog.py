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

BROKEN = """\
models:
  - name: a
    model: openai/x
    tier: 1
    adpter: litellm
  - name: b
    model: m
    tier: 9
    adapter: litelm
routing:
  context_hedroom: 0.1
"""


def test_every_problem_at_once_with_file_line_and_a_suggestion():
    with pytest.raises(CatalogError) as ei:
        parse(BROKEN, source="cat.yaml")
    msg = str(ei.value)
    assert "(4 problems)" in msg
    assert "cat.yaml:5: models.0.adpter: Extra inputs are not permitted (did you mean 'adapter'?)" in msg
    assert "cat.yaml:8: models.1.tier:" in msg
    assert "cat.yaml:9: models.1.adapter:" in msg and "(did you mean 'litellm'?)" in msg
    assert "cat.yaml:11: routing.context_hedroom:" in msg and "(did you mean 'context_headroom'?)" in msg


def test_yaml_errors_name_the_file_and_line():
    with pytest.raises(CatalogError) as ei:
        parse("models:\n  - name: a\n    tier: [1\n", source="cat.yaml")
    assert str(ei.value).startswith("cat.yaml:4:") and "<unicode string>" not in str(ei.value)


def test_cross_reference_problems_come_together_with_lines():
    text = ("models: [{name: alpha, model: m, tier: 1}]\naliases:\n  x: alpah\n  y: nowhere\n"
            "routing:\n  auto_cascade: {coding: default}\n")
    with pytest.raises(CatalogError) as ei:
        parse(text, source="c.yaml")
    msg = str(ei.value)
    assert "(3 problems)" in msg
    assert "c.yaml:3: alias 'x' points to unknown model 'alpah' (did you mean 'alpha'?)" in msg
    assert "c.yaml:4: alias 'y'" in msg
    assert "c.yaml:6: routing.auto_cascade.coding names unknown cascade policy 'default'" in msg


def test_config_check_reports_a_local_model_file_that_does_not_exist(tmp_path, capsys):
    from tiergate.cli import main

    f = tmp_path / "c.yaml"
    f.write_text(f"models: [{{name: local, model: {tmp_path}/none.gguf, adapter: llama-cpp, tier: 0}}]\n")
    assert main(["config", "check", str(f)]) == 1
    assert "none.gguf does not exist" in capsys.readouterr().err
    f.write_text("models: [{name: local, model: 'bundled:smollm2-135m', adapter: llama-cpp, tier: 0}]\n")
    assert main(["config", "check", str(f)]) == 0


def test_the_readme_complete_example_passes_config_check(tmp_path, capsys):
    import re
    from pathlib import Path

    from tiergate.cli import main

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("complete example (it passes"):]
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    f = tmp_path / "example.yaml"
    f.write_text(example.replace("/models/qwen2.5-coder-1.5b-q4_k_m.gguf", "bundled:smollm2-135m"))
    assert main(["config", "check", str(f)]) == 0, capsys.readouterr().err


def test_prices_come_from_the_shipped_snapshot_without_litellm(monkeypatch):
    # Finding 3: without litellm every cloud model showed $0.00 and no context window.
    from tiergate.config import pricing

    monkeypatch.setattr(pricing, "litellm_cost_map_path", lambda: None)
    pricing._cost_map.cache_clear()
    try:
        cat = load()
        mini = cat.by_id["gpt-4o-mini"]
        assert (mini.input_cost_per_mtok, mini.output_cost_per_mtok, mini.context_window) == (0.15, 0.6, 128000)
        assert all(m.price_known and (m.context_window or m.has("embeddings")) for m in cat.models)
        assert pricing.snapshot_version() == "1.106.2"
    finally:
        pricing._cost_map.cache_clear()


def test_an_unpriced_model_is_unknown_not_free_and_refused_under_a_budget():
    cat = parse("models: [{name: x, model: acme/unheard-of-model, tier: 1}]", source="t")
    assert cat.models[0].input_cost_per_mtok is None and not cat.models[0].price_known
    with pytest.raises(CatalogError, match="no known price for 'acme/unheard-of-model' and a budget"):
        parse("models: [{name: x, model: acme/unheard-of-model, tier: 1}]\nbudgets: {global: {daily_usd: 5}}",
              source="t")
    priced = parse("models: [{name: x, model: acme/m, tier: 1, input_cost_per_mtok: 1, output_cost_per_mtok: 2}]\n"
                   "budgets: {global: {daily_usd: 5}}", source="t")
    assert priced.models[0].price_known


def test_cost_map_is_parsed_only_for_a_model_it_may_know(monkeypatch):
    """A model neither the snapshot nor litellm's map knows (a self-hosted endpoint) costs a
    substring search, not the 3 MB parse, on the cold-start path; a model only litellm's map
    knows still resolves from it."""
    import json
    from types import SimpleNamespace

    from tiergate.config import pricing

    sizes: list[int] = []
    monkeypatch.setattr(pricing, "json", SimpleNamespace(loads=lambda text: sizes.append(len(text)) or json.loads(text)))
    pricing._cost_map.cache_clear()
    try:
        assert pricing.lookup("openai/self-hosted-model-nobody-prices") is None
        assert not [n for n in sizes if n > 1_000_000]  # the 3 MB map was not parsed
        snapshot = json.loads(pricing.SNAPSHOT.read_text())["models"]
        full = json.loads(pricing.litellm_cost_map_path().read_text())
        only_in_map = next(k for k, v in full.items()
                           if k not in snapshot and isinstance(v, dict) and "input_cost_per_token" in v)
        known = pricing.lookup(only_in_map)
        assert known is not None and known.input_cost_per_mtok is not None
        assert [n for n in sizes if n > 1_000_000]  # parsed once it may hold the key
    finally:
        pricing._cost_map.cache_clear()


def test_openais_own_api_drops_top_k_every_other_endpoint_keeps_it():
    cat = parse("""
models:
  - {name: own-litellm, model: openai/gpt-4o-mini, tier: 1, input_cost_per_mtok: 1, output_cost_per_mtok: 1}
  - {name: own-native, model: openai/gpt-4o-mini, adapter: openai-compatible, tier: 1,
     input_cost_per_mtok: 1, output_cost_per_mtok: 1}
  - {name: own-base, model: openai/gpt-4o, adapter: openai-compatible, tier: 1, api_base: "https://api.openai.com/v1",
     input_cost_per_mtok: 1, output_cost_per_mtok: 1}
  - {name: azure, model: azure/gpt-4o, tier: 1, api_base: "https://acme.openai.azure.com",
     input_cost_per_mtok: 1, output_cost_per_mtok: 1}
  - {name: vllm, model: openai/qwen, adapter: openai-compatible, tier: 0, api_base: "http://10.0.0.5:8000/v1",
     input_cost_per_mtok: 0, output_cost_per_mtok: 0}
  - {name: vllm-litellm, model: openai/qwen, tier: 0, api_base: "http://10.0.0.5:8000/v1",
     input_cost_per_mtok: 0, output_cost_per_mtok: 0}
  - {name: claude, model: anthropic/claude-haiku-4-5, tier: 1, input_cost_per_mtok: 1, output_cost_per_mtok: 1}
  - {name: local, model: /m.gguf, adapter: llama-cpp, tier: 0}
  - {name: strict, model: openai/x, adapter: openai-compatible, tier: 0, api_base: "http://10.0.0.6/v1",
     drop_params: [top_k, seed], input_cost_per_mtok: 0, output_cost_per_mtok: 0}
  - {name: keep, model: openai/gpt-4o-mini, tier: 1, drop_params: [], input_cost_per_mtok: 1, output_cost_per_mtok: 1}
""", source="test")
    dropped = {m.name: set(m.drop_params) for m in cat.models}
    assert dropped == {"own-litellm": {"top_k"}, "own-native": {"top_k"}, "own-base": {"top_k"}, "azure": {"top_k"},
                       "vllm": set(), "vllm-litellm": set(), "claude": set(), "local": set(),
                       "strict": {"top_k", "seed"}, "keep": set()}

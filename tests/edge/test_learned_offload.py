"""The edge's local-vs-cloud decision driven by a router artifact whose outcome keys are
the local model and the cloud: offload when local is predicted below the target, stay
local otherwise (the rules still apply: context, capabilities, cloud state); the reason
says what the model predicted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import routing_data
from tiergate.cli import main as cli
from tiergate.config.catalog import CatalogError, LearnedConfig
from tiergate.limits.admission import Principal
from tiergate.request import GatewayRequest
from tiergate.routing.learned.serving import LearnedRouting
from tiergate_edge.agent import edge_catalog, edge_learned
from tiergate_edge.router import EdgeRouter
from tiergate_edge.settings import EdgeSettings

HARD = "Find the eigenvalues of the 4x4 matrix with ones on the diagonal."
EASY = "What is the capital of Kenya?"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("edge-art")
    data = routing_data.write(d / "g.jsonl", 500, answers=False)
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    with (d / "edge.jsonl").open("w") as f:  # the local model is "weak", the cloud "strong"
        for r in rows:
            r["outcomes"] = {"local": r["outcomes"]["weak"], "cloud": r["outcomes"]["strong"]}
            f.write(json.dumps(r) + "\n")
    cat = d / "edge.yaml"
    cat.write_text("models:\n  - {name: local, model: x.gguf, adapter: llama-cpp, tier: 0}\n"
                   "  - {name: cloud, model: tiergate-cloud, adapter: openai-compatible, tier: 4,\n"
                   "     api_base: 'http://127.0.0.1:9/v1', input_cost_per_mtok: 1, output_cost_per_mtok: 1}\n")
    assert cli(["router", "train", str(d / "edge.jsonl"), "--config", str(cat), "--out", str(d / "art")]) == 0
    return d / "art"


def _router(artifact: Path, *, up: bool = True, ctx: int = 4096) -> EdgeRouter:
    edge = EdgeSettings(cloud_url="http://127.0.0.1:9", router_artifact=artifact)
    cat = edge_catalog(edge)
    return EdgeRouter(cat, local=cat.groups["local"][0], cloud=cat.groups["cloud"][0], cloud_up=lambda: up,
                      local_context=lambda spec: ctx, learned=edge_learned(edge, cat))


def _req(text: str) -> GatewayRequest:
    return GatewayRequest.from_chat({"model": "auto", "messages": [{"role": "user", "content": text}]},
                                    aliases={}, default_model="auto")


def test_the_artifact_decides_local_or_cloud(artifact):
    r = _router(artifact)
    hard = r.plan(_req(HARD), Principal("local", is_master=True))
    easy = r.plan(_req(EASY), Principal("local", is_master=True))
    assert hard.candidates[0].name == "cloud" and "-> offload" in hard.reason
    assert easy.candidates[0].name == "local" and "-> stay local" in easy.reason
    for plan in (hard, easy):
        block = plan.describe()["router"]
        assert block["kind"] == "learned" and set(block["predicted_quality"]) == {"local", "cloud"}
        assert block["chosen"] == plan.candidates[0].name
    pq = hard.describe()["router"]["predicted_quality"]
    assert pq["local"] < pq["cloud"]


def test_the_rules_still_bound_the_learned_choice(artifact):
    # Cloud down: a prompt the artifact would offload falls back to local (it is capable).
    down = _router(artifact, up=False).plan(_req(HARD), Principal("local", is_master=True))
    assert down.candidates[0].name == "local" and "cloud down" in down.reason
    # A prompt that does not fit the local context goes to the cloud whatever the prediction.
    tiny = _router(artifact, ctx=64).plan(_req(EASY + " " + "word " * 100), Principal("local", is_master=True))
    assert tiny.candidates[0].name == "cloud"


def test_an_artifact_without_the_local_model_is_refused(tmp_path):
    art = routing_data.train_artifact(tmp_path)  # outcome keys weak/strong: not edge models
    edge = EdgeSettings(cloud_url="http://127.0.0.1:9", router_artifact=art)
    with pytest.raises(CatalogError, match="names models not in the catalog"):
        LearnedRouting(LearnedConfig(path=art), edge_catalog(edge))

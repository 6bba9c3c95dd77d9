"""``model`` is parsed in one place, with the same answer in every home and door."""

import pytest

from tiergate.errors import InvalidRequest, ModelNotFound
from tiergate.request import GatewayRequest
from tiergate.request.model_ref import ModelRef

ALIASES = {"writer": "claude", "critic": "tier:3", "team": "writer", "thinker": "cascade:deep"}


@pytest.mark.parametrize("text, kind, target, tier, policy", [
    ("gpt-4o-mini", "model", "gpt-4o-mini", None, None),
    ("writer", "model", "claude", None, None),
    ("team", "model", "claude", None, None),          # alias of an alias
    ("critic", "tier", "tier:3", 3, None),
    ("tier:0", "tier", "tier:0", 0, None),
    ("auto", "auto", "auto", None, None),
    ("cascade", "cascade", "cascade", None, "default"),
    ("cascade:refine", "cascade", "cascade:refine", None, "refine"),
    ("thinker", "cascade", "cascade:deep", None, "deep"),
    ("モデル", "model", "モデル", None, None),
])
def test_parse(text, kind, target, tier, policy):
    ref = ModelRef.parse(text, aliases=ALIASES)
    assert (ref.requested, ref.kind, ref.target, ref.tier, ref.policy) == (text, kind, target, tier, policy)


def test_missing_model_is_the_default():
    assert ModelRef.parse(None, default="tier:1").tier == 1
    assert ModelRef.parse("", default="auto").kind == "auto"


@pytest.mark.parametrize("text", ["tier:9", "tier:-1", "tier:x", "tier:", "tier:1.5"])
def test_a_bad_tier_is_model_not_found_everywhere(text):
    with pytest.raises(ModelNotFound) as e:
        ModelRef.parse(text)
    assert e.value.status == 404 and "tier:0 .. tier:4" in e.value.message and e.value.param == "model"


@pytest.mark.parametrize("value", [42, ["gpt"], {"a": 1}, "tier:1\n", "a\rb", "x" * 300])
def test_a_model_that_is_not_a_printable_name_is_a_400(value):
    with pytest.raises(InvalidRequest) as e:
        ModelRef.parse(value)
    assert e.value.status == 400 and e.value.param == "model"


def test_the_request_object_parses_once_and_strips_what_the_gateway_consumes():
    body = {"model": "writer", "messages": [{"role": "user", "content": "Write a python function"}],
            "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 9, "tools": [{"type": "function", "function": {"name": "f"}}]}
    req = GatewayRequest.from_chat(body, aliases=ALIASES, default_model="auto", hints={"x-tiergate-offload": "local"})
    assert req.ref.target == "claude" and req.stream and req.include_usage
    assert "model" not in req.upstream and "stream" not in req.upstream and req.upstream["max_tokens"] == 9
    assert req.needs.max_output_tokens == 9 and req.needs.capabilities == frozenset({"tools"})
    assert req.task.task_type == "coding" and req.task is req.task  # classified once
    assert req.hint("x-tiergate-offload") == "local"

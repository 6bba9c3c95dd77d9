"""What a local model is asked (messages, constraints) and how its text becomes an answer."""

from __future__ import annotations

import json

import pytest

from tiergate.errors import UpstreamBadRequest
from tiergate_edge.chat_prompt import close_json, normalize, parse_tool_calls, plan_chat

W = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
SYS = "default system"


def test_messages_become_plain_strings_any_template_takes() -> None:
    msgs = normalize([
        {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "3 C"},
    ])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == '<tool_call>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</tool_call>'
    assert msgs[3]["content"] == "The tool get_weather returned: 3 C"
    with pytest.raises(UpstreamBadRequest):
        normalize([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])


def test_default_system_prompt_only_when_the_client_sends_none() -> None:
    plain = plan_chat({"messages": [{"role": "user", "content": "hi"}]}, default_system=SYS)
    assert plain.messages[0] == {"role": "system", "content": SYS}
    own = plan_chat({"messages": [{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}]},
                    default_system=SYS)
    assert own.messages[0]["content"] == "mine"


def test_formats_without_a_system_role_get_it_in_the_first_user_turn() -> None:
    # llama.cpp's "gemma" format silently drops system messages: fold them in instead.
    p = plan_chat({"messages": [{"role": "system", "content": "Answer in French."},
                                {"role": "user", "content": "hi"}]}, chat_format="gemma")
    assert p.messages == [{"role": "user", "content": "Answer in French.\n\nhi"}]


def test_tool_choice_decides_whether_a_call_is_forced() -> None:
    ask = [{"role": "user", "content": "What's the weather in Paris?"}]
    auto = plan_chat({"messages": ask, "tools": [W]})
    assert auto.mode == "tools" and auto.force_call and "get_weather" in auto.messages[0]["content"]
    unrelated = plan_chat({"messages": [{"role": "user", "content": "What is 2+2?"}], "tools": [W]})
    assert unrelated.mode == "tools" and not unrelated.force_call
    assert plan_chat({"messages": ask, "tools": [W], "tool_choice": "none"}).mode == "text"
    assert plan_chat({"messages": [{"role": "user", "content": "2+2?"}], "tools": [W],
                      "tool_choice": "required"}).force_call
    after = plan_chat({"messages": [*ask, {"role": "tool", "tool_call_id": "x", "content": "sunny"}], "tools": [W]})
    assert not after.force_call and "get_weather" not in after.messages[0].get("content", "")
    with pytest.raises(UpstreamBadRequest):
        plan_chat({"messages": ask, "tools": [W], "tool_choice": {"type": "function", "function": {"name": "x"}}})
    single = plan_chat({"messages": ask, "tools": [W], "parallel_tool_calls": False})
    assert single.schema is not None and single.schema["maxItems"] == 1


def test_the_keyword_rule_only_where_the_template_cannot_render_tools() -> None:
    """``auto`` on a model whose template renders tools: its own decision (tools go to the
    template, nothing forced); on one whose template does not: the keyword rule."""
    ask = [{"role": "user", "content": "Is it raining in Tokyo?"}]
    own = plan_chat({"messages": ask, "tools": [W]}, default_system=SYS, template_tools=True)
    assert own.mode == "tools" and not own.force_call and own.schema is None
    assert own.template_tools == (W,) and own.tool_names == ("get_weather",)
    assert own.messages == [{"role": "system", "content": SYS}, *ask]  # no tool list of ours in the prompt
    forced = plan_chat({"messages": ask, "tools": [W], "tool_choice": "required"}, template_tools=True)
    assert forced.force_call and forced.template_tools is None  # a forced call is grammar-constrained, any model
    # The keyword rule: a call is forced only when the turn shares a content word with the tool.
    assert plan_chat({"messages": [{"role": "user", "content": "Weather in Oslo?"}], "tools": [W]}).force_call
    paraphrase = plan_chat({"messages": ask, "tools": [W]})
    assert paraphrase.mode == "tools" and not paraphrase.force_call and paraphrase.template_tools is None


def test_a_template_models_calls_are_parsed_with_or_without_their_tags() -> None:
    names = ["get_weather", "calculator"]
    one = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    two = '{"name": "calculator", "arguments": {"expression": "2*3"}}'
    # Qwen-style: one object per tag; the tags are special tokens the text leaves out.
    for text in (f"<tool_call>\n{one}\n</tool_call>\n<tool_call>\n{two}\n</tool_call>", f"\n{one}\n\n{two}\n"):
        content, calls = parse_tool_calls(text, names, bare=True)
        assert content is None and [c["function"]["name"] for c in calls] == ["get_weather", "calculator"]
    assert parse_tool_calls(f"\n{one}\n", names) == (f"\n{one}\n", [])  # bare JSON only for template models
    unknown = '{"name": "good morning", "arguments": {"message": "hola"}}'
    assert parse_tool_calls(unknown, names, bare=True) == (unknown, [])  # a call to no tool stays text
    assert parse_tool_calls(f"{one} and then some words", names, bare=True)[1] == []
    stringly = '{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}'
    assert json.loads(parse_tool_calls(stringly, names, bare=True)[1][0]["function"]["arguments"]) == {"city": "Rome"}


def test_tool_calls_are_parsed_deduplicated_and_unknown_names_stay_text() -> None:
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    content, calls = parse_tool_calls(f"<tool_call>[{call}, {call}]</tool_call>", ["get_weather"])
    assert content is None and len(calls) == 1
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert parse_tool_calls('<tool_call>[{"name": "rm", "arguments": {}}]</tool_call>', ["get_weather"])[1] == []
    assert parse_tool_calls("just words", ["get_weather"]) == ("just words", [])


def test_json_modes() -> None:
    js = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}}}
    p = plan_chat({"messages": [{"role": "user", "content": "x"}], "response_format": js})
    assert p.mode == "json" and p.schema == {"type": "object"} and "JSON schema" in p.messages[0]["content"]
    assert plan_chat({"messages": [{"role": "user", "content": "x"}],
                      "response_format": {"type": "json_object"}}).schema is None
    with pytest.raises(UpstreamBadRequest):
        plan_chat({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}})


@pytest.mark.parametrize("doc", [
    {"a": 1, "b": [1, 2, {"c": 'x"y'}], "d": {"e": None, "f": True}},
    [1, "two", {"three": -3.5e2}], {"name": "Felix", "tags": ["a", "b"], "n": {"m": {"k": "v"}}}, {}, [],
])
def test_json_cut_off_anywhere_is_closed_into_valid_json(doc) -> None:
    for text in (json.dumps(doc), json.dumps(doc, indent=2)):
        assert close_json(text) == text
        for i in range(1, len(text)):
            json.loads(close_json(text[:i]))   # every prefix closes into valid JSON

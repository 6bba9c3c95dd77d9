"""Door translation at the lowest layer: Anthropic Messages and Responses <-> chat."""

from __future__ import annotations

import pytest

from tiergate.dialects import anthropic, completions, embeddings, responses
from tiergate.errors import InvalidRequest


def test_anthropic_user_turn_puts_tool_results_first_and_keeps_images():
    chat = anthropic.to_chat({"model": "m", "max_tokens": 5, "messages": [
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "s"},
                                          {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}], "is_error": True}]}]})
    assert chat["messages"][0] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}
    assert chat["messages"][1] == {"role": "tool", "tool_call_id": "t1", "content": "[tool error] 42"}
    assert chat["messages"][2]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}}


@pytest.mark.parametrize("choice, expected", [({"type": "auto"}, "auto"), ({"type": "any"}, "required"),
                                              ({"type": "none"}, "none"),
                                              ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}})])
def test_anthropic_tool_choice(choice, expected):
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": choice,
            "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    assert anthropic.to_chat(body)["tool_choice"] == expected


def test_anthropic_server_tools_and_unknown_blocks_are_400s_on_the_translation_path():
    with pytest.raises(InvalidRequest) as e:
        anthropic.to_chat({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                           "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    assert e.value.param == "tools.0"
    with pytest.raises(InvalidRequest):
        anthropic.to_chat({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]})


def test_anthropic_stream_translator_opens_one_block_per_kind():
    tr = anthropic.MessageStream(input_tokens=3, model="m")
    events = []
    for chunk in ({"id": "c", "choices": [{"delta": {"role": "assistant", "content": "Hi"}}]},
                  {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}}]},
                  {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}}]},
                  {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ': 1}'}}]}}]},
                  {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
                  {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4}}):
        events += tr.events(chunk)
    events += tr.finish()
    names = [n for n, _ in events]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert [d["index"] for n, d in events if n.startswith("content_block")] == [0, 0, 0, 1, 1, 1, 1]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"] == {"input_tokens": 7, "output_tokens": 4}


def test_anthropic_usage_counts_cache_tokens_as_input():
    assert anthropic.usage_tokens({"input_tokens": 5, "cache_read_input_tokens": 100,
                                   "cache_creation_input_tokens": 20, "output_tokens": 9}) == (125, 9)


def test_responses_input_items_merge_calls_and_drop_reasoning():
    msgs = responses.input_messages([
        {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
        {"type": "reasoning", "id": "r", "summary": []},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "1"}])
    assert msgs[0] == {"role": "system", "content": "rules"}
    assert [c["id"] for c in msgs[1]["tool_calls"]] == ["a", "b"]
    assert msgs[2] == {"role": "tool", "tool_call_id": "a", "content": "1"}


def test_responses_history_after_a_tool_call_turn():
    resp = responses.from_chat({"model": "m", "choices": [{"finish_reason": "tool_calls", "message": {
        "content": None, "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2}}, {"input": "x"}, "resp_1")
    assert resp["output"][0]["type"] == "function_call" and resp["usage"]["total_tokens"] == 3
    hist = responses.history_after([{"role": "user", "content": "x"}], resp)
    assert hist[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


def test_responses_incomplete_when_the_answer_was_cut():
    resp = responses.from_chat({"model": "m", "choices": [{"finish_reason": "length", "message": {"content": "a"}}]},
                               {"input": "x", "max_output_tokens": 1}, "resp_2")
    assert resp["status"] == "incomplete" and resp["incomplete_details"] == {"reason": "max_output_tokens"}


def test_completions_and_embeddings_helpers():
    assert completions.to_chat({"prompt": ["p"], "model": "m"})["max_tokens"] == 16
    assert embeddings.prompt_tokens({"input": [[1, 2, 3], [4]]}) == 4
    assert embeddings.texts({"input": "a"}) == ["a"] and embeddings.texts({"input": [1, 2]}) is None


def test_a_stored_conversation_round_trips_as_responses_input_items():
    """input_items is the inverse of input_messages: what a native follow-up sends OpenAI
    is the conversation the gateway stored (tool calls, their outputs, images)."""
    from tiergate.dialects.responses import input_items, input_messages

    history = [
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "thanks"},
    ]
    items = input_items(history)
    assert [i["type"] for i in items] == ["message", "function_call", "function_call", "function_call_output",
                                          "function_call_output", "message", "message"]
    assert items[0]["content"][1] == {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}
    assert input_messages(items) == history

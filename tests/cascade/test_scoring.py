"""The deterministic scorer: each check, in English and Japanese."""

import pytest

from tiergate.cascade.scoring import (
    Expectations,
    Score,
    blend_judge,
    expectations,
    parse_judge,
    score_response,
    score_text,
)


def ask(text: str, **kw) -> Expectations:
    return expectations({"messages": [{"role": "user", "content": text}], **kw})


def completion(content, finish="stop", **msg):
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content, **msg},
                         "finish_reason": finish}]}


def test_good_plain_answer_scores_one():
    s = score_text(ask("What is the capital of France?"), "The capital of France is Paris.")
    assert s == Score(1.0, ("ok",))


@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_scores_zero(text):
    assert score_text(ask("hi"), text) == Score(0.0, ("empty",))


def test_tool_calls_without_content_are_not_empty():
    resp = completion(None, finish="tool_calls", tool_calls=[{"id": "c1", "type": "function",
                                                             "function": {"name": "f", "arguments": "{}"}}])
    assert score_response(ask("call f", tools=[{"type": "function"}]), resp).reasons == ("tool_calls",)


def test_truncated_answer_is_capped():
    s = score_response(ask("Tell me a story"), completion("Once upon a time", finish="length"))
    assert s.value <= 0.3 and "truncated" in s.reasons


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't help with that request.",
    "I cannot assist with this.",
    "申し訳ありませんが、そのご質問にはお答えできません。",
    "その内容には対応できません。",
])
def test_refusals(text):
    s = score_text(ask("question"), text)
    assert s.value <= 0.1 and "refusal" in s.reasons


def test_refusal_field_from_openai():
    s = score_response(ask("q"), completion("", refusal="no"))
    assert s.value == 0.0  # empty content dominates
    s = score_response(ask("q"), completion("text", refusal="I refuse"))
    assert "refusal" in s.reasons


def test_json_requested_by_response_format_must_parse_strictly():
    exp = ask("Give me the user", response_format={"type": "json_object"})
    assert score_text(exp, '{"name": "a"}').value == 1.0
    assert "invalid_json" in score_text(exp, '```json\n{"name": "a"}\n```').reasons
    assert "invalid_json" in score_text(exp, "name: a").reasons


def test_json_asked_in_prose_accepts_a_fenced_block():
    exp = ask("Return the result as JSON with keys name and age")
    assert exp.json and not exp.json_strict
    assert score_text(exp, 'Here:\n```json\n{"name": "a", "age": 1}\n```').value == 1.0
    assert score_text(exp, "The name is a and the age is 1").reasons == ("invalid_json",)
    assert ask("JSON形式で返してください").json


def test_python_code_must_parse():
    exp = ask("Write a Python function that reverses a string")
    assert (exp.code, exp.code_lang) == (True, "python")
    assert score_text(exp, "```python\ndef rev(s):\n    return s[::-1]\n```").value == 1.0
    bad = score_text(exp, "```python\ndef rev(s)\n    return s[::-1]\n```")
    assert bad.value <= 0.2 and bad.reasons == ("code_syntax:python",)


def test_python_asked_in_japanese():
    exp = ask("Pythonで文字列を反転する関数を書いてください")
    assert (exp.code, exp.code_lang) == (True, "python")
    assert score_text(exp, "```\ndef f(s):\n  return s[::-1\n```").reasons == ("code_syntax:python",)


def test_other_languages_use_bracket_balance():
    exp = ask("Write a JavaScript function that adds two numbers")
    assert score_text(exp, "```js\nfunction add(a, b) { return a + b; }\n```").value == 1.0
    assert score_text(exp, "```js\nfunction add(a, b) { return (a + b; }\n```").value <= 0.2
    # brackets inside strings and comments do not count
    assert score_text(exp, "```js\nconst s = \"{(\"; // )\nfunction f() { return s; }\n```").value == 1.0


def test_code_asked_but_prose_answered():
    exp = ask("Implement a function in Go that sums a slice")
    s = score_text(exp, "You would loop over the slice and add each element.")
    assert "format:no_code" in s.reasons and s.value <= 0.4


def test_code_block_required():
    exp = ask("Put the command in a code block: how do I list files?")
    assert "format:no_code_block" in score_text(exp, "ls -la").reasons


@pytest.mark.parametrize("prompt,answer,reason", [
    ("Give me 5 ideas for a birthday party", "1. Cake\n2. Games\n3. Music", "format:items=3/5"),
    ("List three primary colors", "Red, yellow and blue.", "format:no_list"),
    ("利点を3つ挙げてください", "・速い\n・安い", "format:items=2/3"),
])
def test_list_format(prompt, answer, reason):
    s = score_text(ask(prompt), answer)
    assert reason in s.reasons and s.value < 0.7


def test_list_with_enough_items_passes():
    assert score_text(ask("Name 3 planets"), "- Mercury\n- Venus\n- Earth").value == 1.0


@pytest.mark.parametrize("text", ["I'm not sure, but it might be Paris.", "たぶんパリですが、自信がありません。"])
def test_hedging_lowers_the_score(text):
    s = score_text(ask("What is the capital of France?"), text)
    assert 0 < s.value < 0.75 and s.reasons[0].startswith("hedging:")


def test_judge_parsing_and_blend():
    assert parse_judge("Score: 7/10") == 7.0
    assert parse_judge("10") == 10.0
    assert parse_judge("no idea") is None
    blended = blend_judge(Score(1.0, ("ok",)), 4.0, 0.5)
    assert blended.value == pytest.approx(0.7) and blended.judge == 4.0 and "judge:4/10" in blended.reasons
    assert "judge:unparseable" in blend_judge(Score(0.9, ("ok",)), None, 0.5).reasons


def test_stopping_at_the_clients_own_cap_is_not_a_weakness():
    body = {"messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 8}
    s = score_response(expectations(body), completion("Once upon a time there", finish="length"))
    assert "stopped_at_max_tokens" in s.reasons and "truncated" not in s.reasons and s.value >= 0.7
    uncapped = score_response(expectations({"messages": body["messages"]}), completion("Once upon", finish="length"))
    assert "truncated" in uncapped.reasons and uncapped.value <= 0.3


def test_degenerate_answers_fail_even_when_the_client_capped_them():
    # Finding 6: a prompt-echo loop scored 1.0 when the client set max_tokens.
    q = "What is the capital of France?"
    body = {"messages": [{"role": "user", "content": q}], "max_tokens": 64}
    exp = expectations(body)
    echo = (q + " prochains\n") * 6
    s = score_text(exp, echo, finish_reason="length")
    assert s.value < 0.3 and "degenerate:prompt_echo" in s.reasons
    loop = "L'Étoile, la Cité, " + "la Femme, " * 40
    s = score_text(exp, loop, finish_reason="length")
    assert s.value < 0.3 and "degenerate:repetition" in s.reasons
    # Answers that quote the question once, or repeat a word now and then, are fine.
    assert score_text(exp, q + " The capital of France is Paris.").value == 1.0
    fine = "Paris is the capital. Paris has the Louvre, the Seine, and many cafés; Paris is large and old."
    assert score_text(exp, fine).value == 1.0

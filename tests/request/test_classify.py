from tiergate.request.classify import classify


def _c(text: str, **kw):
    return classify([{"role": "user", "content": text}], **kw)


def test_english_and_japanese_signals():
    assert _c("Please debug this stack trace").task_type == "coding"
    assert _c("このバグを修正して").task_type == "coding"
    assert _c("分析して比較してください").task_type == "analysis"
    assert _c("Tell me a joke").task_type == "general"
    assert _c("What's the weather right now in Tokyo?").task_type == "realtime"


def test_code_shape_without_keywords():
    p = _c("```\nx = [i for i in range(10)]\n```\nwhy?")
    assert p.task_type == "coding" and "coding:code-shape" in p.signals


def test_difficulty_grows_with_length_and_structure():
    assert _c("hi").difficulty == "easy"
    long = "Explain in depth, step by step and rigorous:\n" + "\n".join(f"{i}. point?" for i in range(6))
    assert _c(long).difficulty == "hard"


def test_hint_wins_and_extra_keywords_count():
    assert _c("hello", hint="premium").task_type == "premium"
    assert _c("terraform this", extra_keywords={"coding": ["terraform"]}).task_type == "coding"


def test_token_estimates_latin_and_cjk():
    from tiergate.tokens import text_tokens

    assert text_tokens("") == 0
    assert text_tokens("a" * 400) == 100                      # ~4 characters a token
    assert text_tokens("量子力学について説明して") == 12           # ~1 token per CJK character
    mixed = text_tokens("Pythonで" + "データ" * 10)
    assert 31 <= mixed <= 33                                   # 31 wide + "Python" (2)

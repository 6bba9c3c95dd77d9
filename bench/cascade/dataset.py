"""A made-up evaluation set: prompts with a cheap model's answer labelled good or bad.

Each item: (prompt, extra request fields, cheap answer, finish_reason, label). "bad" means
a stronger tier should be paid for; "good" means the cheap answer should be accepted.
"""

from __future__ import annotations

PY_OK = "```python\ndef is_prime(n):\n    if n < 2:\n        return False\n    for i in range(2, int(n ** 0.5) + 1):\n        if n % i == 0:\n            return False\n    return True\n```"
PY_BAD = "```python\ndef is_prime(n)\n    for i in range(2, n):\n        if n % i == 0:\n            return False\n    return True\n```"
JS_OK = "```javascript\nfunction debounce(fn, ms) {\n  let t;\n  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };\n}\n```"
JS_BAD = "```javascript\nfunction debounce(fn, ms) {\n  let t;\n  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms);\n}\n```"
JSON = {"response_format": {"type": "json_object"}}

ITEMS: list[tuple[str, dict, str, str, str]] = [
    ("Write a Python function is_prime(n).", {}, PY_OK, "stop", "good"),
    ("Write a Python function is_prime(n).", {}, PY_BAD, "stop", "bad"),
    ("Implement a debounce function in JavaScript.", {}, JS_OK, "stop", "good"),
    ("Implement a debounce function in JavaScript.", {}, JS_BAD, "stop", "bad"),
    ("Write a Python function that parses a CSV line.", {}, "```python\ndef parse(line):\n    return line.split(',')\n```", "stop", "good"),
    ("Write a Python function that parses a CSV line.", {}, "You can split the line on commas.", "stop", "bad"),
    ("Write a SQL query that counts orders per customer.", {}, "```sql\nSELECT customer_id, COUNT(*) FROM orders GROUP BY customer_id;\n```", "stop", "good"),
    ("Write a SQL query that counts orders per customer.", {}, "```sql\nSELECT customer_id, COUNT(* FROM orders GROUP BY customer_id;\n```", "stop", "bad"),
    ("Pythonでフィボナッチ数列を返す関数を書いてください。", {}, "```python\ndef fib(n):\n    a, b = 0, 1\n    out = []\n    for _ in range(n):\n        out.append(a)\n        a, b = b, a + b\n    return out\n```", "stop", "good"),
    ("Pythonでフィボナッチ数列を返す関数を書いてください。", {}, "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n:\n        yield a\n```", "stop", "bad"),
    ("Extract the user's name and age.", JSON, '{"name": "Aiko", "age": 31}', "stop", "good"),
    ("Extract the user's name and age.", JSON, "Name: Aiko, age 31", "stop", "bad"),
    ("Return the result as JSON with keys city and country.", {}, '```json\n{"city": "Kyoto", "country": "Japan"}\n```', "stop", "good"),
    ("Return the result as JSON with keys city and country.", {}, '{"city": "Kyoto", "country": ', "length", "bad"),
    ("JSON形式で商品名と価格を返してください。", {}, '{"name": "お茶", "price": 150}', "stop", "good"),
    ("JSON形式で商品名と価格を返してください。", {}, "商品名はお茶、価格は150円です。", "stop", "bad"),
    ("Give me 5 ideas for a team offsite.", {}, "1. Hiking\n2. Cooking class\n3. Escape room\n4. Volunteering\n5. Board games", "stop", "good"),
    ("Give me 5 ideas for a team offsite.", {}, "1. Hiking\n2. Cooking class", "stop", "bad"),
    ("List three primary colors.", {}, "- Red\n- Yellow\n- Blue", "stop", "good"),
    ("List three primary colors.", {}, "Red, yellow and blue are usually named.", "stop", "bad"),
    ("日本の主要な島を4つ挙げてください。", {}, "・本州\n・北海道\n・九州\n・四国", "stop", "good"),
    ("日本の主要な島を4つ挙げてください。", {}, "・本州\n・北海道", "stop", "bad"),
    ("What is the capital of Australia?", {}, "The capital of Australia is Canberra.", "stop", "good"),
    ("What is the capital of Australia?", {}, "I'm not sure, I think it might be Sydney.", "stop", "bad"),
    ("Explain what a hash map is in two sentences.", {}, "A hash map stores key-value pairs in buckets chosen by a hash of the key. Lookups are O(1) on average.", "stop", "good"),
    ("Explain what a hash map is in two sentences.", {}, "", "stop", "bad"),
    ("Summarize the plot of Hamlet.", {}, "Prince Hamlet seeks revenge on his uncle Claudius, who murdered Hamlet's father and married his mother.", "stop", "good"),
    ("Summarize the plot of Hamlet.", {}, "Prince Hamlet seeks revenge on his uncle Claudius, who", "length", "bad"),
    ("How do I reset a git branch to origin?", {}, "Run `git fetch origin` then `git reset --hard origin/<branch>`.", "stop", "good"),
    ("How do I reset a git branch to origin?", {}, "I'm sorry, but I can't help with that.", "stop", "bad"),
    ("富士山の高さは？", {}, "富士山の標高は3,776メートルです。", "stop", "good"),
    ("富士山の高さは？", {}, "申し訳ありませんが、お答えできません。", "stop", "bad"),
    ("東京タワーはいつ完成しましたか？", {}, "1958年に完成しました。", "stop", "good"),
    ("東京タワーはいつ完成しましたか？", {}, "はっきりしませんが、たぶん1960年代です。自信がありません。", "stop", "bad"),
    ("Translate 'good morning' to French.", {}, "Bonjour.", "stop", "good"),
    ("Translate 'good morning' to French.", {}, "   ", "stop", "bad"),
    ("Write a Go function that reverses a slice.", {}, "```go\nfunc Reverse(s []int) {\n\tfor i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {\n\t\ts[i], s[j] = s[j], s[i]\n\t}\n}\n```", "stop", "good"),
    ("Write a Go function that reverses a slice.", {}, "```go\nfunc Reverse(s []int) {\n\tfor i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {\n\t\ts[i], s[j] = s[j], s[i]\n\t}\n```", "stop", "bad"),
    ("What does HTTP status 429 mean?", {}, "Too Many Requests: the client sent too many requests in a given time.", "stop", "good"),
    ("What does HTTP status 429 mean?", {}, "It's hard to say without context; I don't know.", "stop", "bad"),
]

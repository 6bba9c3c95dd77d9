"""Framework clients over real HTTP: LangChain ``ChatAnthropic(base_url=...)`` and
``ChatOpenAI(use_responses_api=True)``, and openai-node (npm) for chat, Responses and
streaming."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

ROOT = Path(__file__).resolve().parents[2]


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return "sunny"


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def test_langchain_chat_anthropic(gw, sim):
    llm = ChatAnthropic(model="fast", base_url=gw[0], api_key="x", max_tokens=64, max_retries=0)
    assert _text(llm.invoke("hello langchain").content) == "echo: hello langchain [model=fast-a]"
    streamed = "".join(_text(c.content) for c in llm.stream("stream langchain"))
    assert streamed == "echo: stream langchain [model=fast-a]"
    call = llm.bind_tools([get_weather]).invoke("weather in Paris?").tool_calls[0]
    assert call["name"] == "get_weather" and "city" in call["args"]
    native = ChatAnthropic(model="sonnet", base_url=gw[0], api_key="x", max_tokens=64, max_retries=0)
    assert _text(native.invoke("native hop").content) == "echo: native hop [model=claude-sim]"
    assert sim.requests(model="claude-sim")[0]["path"] == "/v1/messages"


def test_langchain_chat_openai_responses_api(gw, sim):
    llm = ChatOpenAI(model="fast", base_url=gw[0] + "/v1", api_key="x", use_responses_api=True, max_retries=0)
    r = llm.invoke("hello responses")
    assert _text(r.content) == "echo: hello responses [model=fast-a]"
    assert r.usage_metadata["total_tokens"] == r.usage_metadata["input_tokens"] + r.usage_metadata["output_tokens"]
    assert "".join(_text(c.content) for c in llm.stream("stream it")) == "echo: stream it [model=fast-a]"
    call = llm.bind_tools([get_weather]).invoke("weather in Paris?").tool_calls[0]
    assert call["name"] == "get_weather"
    assert all(q["path"] == "/v1/chat/completions" for q in sim.requests(model="fast-a"))


NODE_SCRIPT = r"""
const { OpenAI } = require("openai");
(async () => {
  const c = new OpenAI({ baseURL: process.argv[2], apiKey: "x", maxRetries: 0 });
  const chat = await c.chat.completions.create({ model: "fast", messages: [{ role: "user", content: "node chat" }] });
  let streamed = "";
  for await (const ch of await c.chat.completions.create({ model: "fast", stream: true,
      messages: [{ role: "user", content: "node stream" }] })) streamed += ch.choices[0]?.delta?.content || "";
  const resp = await c.responses.create({ model: "fast", input: "node responses" });
  const follow = await c.responses.create({ model: "fast", input: "again", previous_response_id: resp.id });
  const kinds = [];
  let rtext = "";
  for await (const ev of await c.responses.create({ model: "fast", input: "node rstream", stream: true })) {
    kinds.push(ev.type);
    if (ev.type === "response.output_text.delta") rtext += ev.delta;
  }
  console.log(JSON.stringify({ chat: chat.choices[0].message.content, streamed, resp: resp.output_text,
                               follow: follow.previous_response_id === resp.id, kinds, rtext }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_openai_node_chat_responses_and_streaming(gw, tmp_path):
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "openai").exists():
        pytest.fail("Node 20 and openai-node are needed: install Node, then `npm ci`")
    script = tmp_path / "client.cjs"
    script.write_text(NODE_SCRIPT)
    out = subprocess.run([node, str(script), gw[0] + "/v1"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NODE_PATH": str(ROOT / "node_modules")})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["chat"] == "echo: node chat [model=fast-a]" and got["streamed"] == "echo: node stream [model=fast-a]"
    assert got["resp"] == "echo: node responses [model=fast-a]" and got["follow"] is True
    assert got["kinds"][0] == "response.created" and got["kinds"][-1] == "response.completed"
    assert got["rtext"] == "echo: node rstream [model=fast-a]"

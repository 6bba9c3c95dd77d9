"""Edge benchmark, one run, figures side by side:

* tokens/s of the local model through the agent (plain and streamed) vs raw
  llama-cpp-python on the same model, threads, prompt (the agent's default system prompt
  included) and sampling, so both sides generate the same tokens; the agent's overhead
  per 1-token request; the offload decision time;
* the prompt cache: time to first token of a request sharing a ~1,500-token prefix with
  the one before it, against the first's (median of ``--cache-runs`` fresh prefixes);
* time to the first useful answer from a clean data dir: ``tiergate serve`` started as a
  subprocess until "What is the capital of France?" comes back containing "Paris"
  (the packages are installed; pip's own time is not in it).

    python bench/edge/bench_edge.py [--model bundled:smollm2-135m|PATH] [--threads 2] [--tokens 64] [--runs 5]

The agent runs in-process under uvicorn on loopback; requests go through the openai SDK
over real HTTP.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import llama_cpp  # noqa: E402
import openai  # noqa: E402

from tests.edge.conftest import start_app  # noqa: E402
from tiergate.settings import Settings  # noqa: E402
from tiergate_edge import default_model  # noqa: E402
from tiergate_edge.agent import EdgeAgent, build_edge_app  # noqa: E402
from tiergate_edge.llama_provider import DEFAULT_SYSTEM_PROMPT  # noqa: E402
from tiergate_edge.settings import EdgeSettings  # noqa: E402

MSG = [{"role": "user", "content": "Write a short story about a robot learning to paint."}]
#: What the agent sends llama.cpp for MSG: its default system prompt first.
RAW_MSG = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, *MSG]
#: The agent's fixed sampling extras (chat_kwargs), repeated on the raw side.
RAW_KW = {"temperature": 0, "repeat_penalty": 1.1, "seed": 0}


def raw_llm(path: Path, fmt: str | None, threads: int, n_ctx: int) -> llama_cpp.Llama:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                          n_batch=min(512, n_ctx), seed=0, chat_format=fmt, verbose=False)
    llm.create_chat_completion(RAW_MSG, max_tokens=4, **RAW_KW)          # warm-up
    return llm


def raw_once(llm: llama_cpp.Llama, tokens: int) -> tuple[float, int]:
    t = time.perf_counter()
    r = llm.create_chat_completion(RAW_MSG, max_tokens=tokens, **RAW_KW)
    return time.perf_counter() - t, r["usage"]["completion_tokens"]


def ttft(client: openai.OpenAI, messages: list[dict]) -> float:
    t = time.perf_counter()
    stream = client.chat.completions.create(model="local", messages=messages, max_tokens=8, temperature=0,
                                            stream=True)
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t
    return first if first is not None else time.perf_counter() - t


def prefix_of(seed: int, tokens: int) -> str:
    """A system prompt of about ``tokens`` tokens (~17.5 per fact with SmolLM2's tokenizer), distinct per seed."""
    facts = [f"Fact {i}: item {seed}-{i} weighs {(i * 7 + seed) % 97} grams." for i in range(tokens * 2 // 35)]
    return "Answer questions about these facts.\n" + "\n".join(facts)


def cache_run(client: openai.OpenAI, runs: int, prefix_tokens: int) -> tuple[list[float], list[float], int]:
    firsts, seconds = [], []
    for r in range(runs):
        system = {"role": "system", "content": prefix_of(1000 + r, prefix_tokens)}
        firsts.append(ttft(client, [system, {"role": "user", "content": "How much does item 3 weigh?"}]))
        seconds.append(ttft(client, [system, {"role": "user", "content": "And item 11?"}]))
    n = client.chat.completions.create(model="local", max_tokens=1, messages=[
        {"role": "system", "content": prefix_of(0, prefix_tokens)}, {"role": "user", "content": "hi"}])
    return firsts, seconds, n.usage.prompt_tokens


def first_useful_answer(threads: int) -> tuple[float, float]:
    """(seconds to the port answering, seconds to a correct first answer) for ``tiergate serve``
    on a clean data dir."""
    import os
    import subprocess

    import httpx

    from tests.support.procs import free_port

    data = Path(tempfile.mkdtemp(prefix="tg-bench-clean-"))
    port = free_port()
    env = {**os.environ, "TIERGATE_DATA_DIR": str(data), "TIERGATE_EDGE_N_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tiergate.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    up = None
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("tiergate serve exited")
            try:
                if up is None and httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    up = time.perf_counter() - t0
                if up is not None:
                    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60, json={
                        "model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]})
                    if "Paris" in r.json()["choices"][0]["message"]["content"]:
                        return up, time.perf_counter() - t0
                    raise RuntimeError(f"not a useful answer: {r.text[:200]}")
            except httpx.TransportError:
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(10)


def agent_once(client: openai.OpenAI, tokens: int, *, stream: bool) -> tuple[float, int]:
    t = time.perf_counter()
    if stream:
        chunks = list(client.chat.completions.create(model="local", messages=MSG, max_tokens=tokens,
                                                     temperature=0, stream=True,
                                                     stream_options={"include_usage": True}))
        n = chunks[-1].usage.completion_tokens
    else:
        n = client.chat.completions.create(model="local", messages=MSG, max_tokens=tokens,
                                           temperature=0).usage.completion_tokens
    return time.perf_counter() - t, n


def interleaved(client: openai.OpenAI, llm: llama_cpp.Llama, tokens: int, runs: int
                ) -> tuple[list[tuple[float, int]], list[tuple[float, int]], list[tuple[float, int]]]:
    """Raw, agent and agent-streamed runs in rotation, so drift in the machine's speed
    (2 shared cores) lands on all three alike."""
    agent_once(client, 4, stream=False)  # warm-up / load
    raw, via, via_stream = [], [], []
    for _ in range(runs):
        raw.append(raw_once(llm, tokens))
        via.append(agent_once(client, tokens, stream=False))
        via_stream.append(agent_once(client, tokens, stream=True))
    return raw, via, via_stream


def tps(rows: list[tuple[float, int]]) -> float:
    return statistics.median(n / s for s, n in rows)


def p10(rows: list[tuple[float, int]]) -> float:
    """The slow tail of tokens/s (the 10th percentile: few runs, so no p99)."""
    vals = sorted(n / s for s, n in rows)
    return vals[max(0, int(len(vals) * 0.1) - 1)] if len(vals) > 1 else vals[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=default_model.BUNDLED_REF)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--cache-runs", type=int, default=3)
    ap.add_argument("--prefix-tokens", type=int, default=1500)
    a = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="tg-bench-edge-"))
    edge = EdgeSettings(model=a.model, n_threads=a.threads, n_ctx_cap=a.ctx, data_dir=data)
    agent = EdgeAgent(Settings(data_dir=data, environment="test"), edge)
    lm = agent.runtime.resolve(agent.local)
    url, server, thread = start_app(build_edge_app(agent))
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    try:
        llm = raw_llm(lm.path, lm.chat_format, a.threads, lm.n_ctx)
        raw, via, via_stream = interleaved(client, llm, a.tokens, a.runs)
        # Overhead: a 1-token request through the agent vs the same call raw.
        one_raw, one_agent = [], []
        for _ in range(10):
            one_raw.append(raw_once(llm, 1)[0])
            one_agent.append(agent_once(client, 1, stream=False)[0])
        llm.close()
        firsts, seconds, prefix_n = cache_run(client, a.cache_runs, a.prefix_tokens)
        # Offload decision time (pure router + policy, no I/O).
        body = {"model": "auto", "messages": MSG, "max_tokens": 64}
        from tiergate.limits.admission import Principal
        from tiergate.request import GatewayRequest

        p = Principal(key_id="bench", is_master=True)
        n = 20000
        t = time.perf_counter()
        for _ in range(n):  # the request object is built per request, as the chat door does
            req = GatewayRequest.from_chat(body, aliases=agent.catalog.aliases, default_model="auto",
                                           keywords=agent.catalog.routing.keywords)
            agent.router.plan(req, p)
        decide_us = (time.perf_counter() - t) / n * 1e6
    finally:
        server.should_exit = True
        thread.join(10)
    up_s, useful_s = first_useful_answer(a.threads)
    res = {
        "model": str(lm.path.name), "threads": a.threads, "max_tokens": a.tokens, "runs": a.runs,
        "raw_tokens_per_s": round(tps(raw), 2),
        "agent_tokens_per_s": round(tps(via), 2),
        "agent_stream_tokens_per_s": round(tps(via_stream), 2),
        "ratio_agent_vs_raw": round(tps(via) / tps(raw), 3),
        "ratio_agent_stream_vs_raw": round(tps(via_stream) / tps(raw), 3),
        "raw_tokens_per_s_p10": round(p10(raw), 2), "agent_tokens_per_s_p10": round(p10(via), 2),
        "agent_overhead_ms_per_request": round((statistics.median(one_agent) - statistics.median(one_raw)) * 1000, 2),
        "offload_decision_us": round(decide_us, 2),
        "prompt_cache_prefix_tokens": prefix_n,
        "prompt_cache_ttft_first_ms_median": round(statistics.median(firsts) * 1000, 1),
        "prompt_cache_ttft_second_ms_median": round(statistics.median(seconds) * 1000, 1),
        "prompt_cache_ttft_ratio": round(statistics.median(seconds) / statistics.median(firsts), 4),
        "clean_start_port_up_s": round(up_s, 2),
        "clean_start_first_useful_answer_s": round(useful_s, 2),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

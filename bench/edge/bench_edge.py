"""Edge benchmark: local tokens/s through the agent vs raw llama-cpp-python (same model,
same threads), the agent's overhead per request, and the offload decision time.

    python bench/edge/bench_edge.py [--model bundled:gemma3-270m|PATH] [--threads 1] [--tokens 64] [--runs 5]

The agent runs in-process under uvicorn on loopback; requests go through the openai SDK
over real HTTP. Greedy decoding with a fixed seed, so both sides generate the same tokens.
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
from tiergate_edge.settings import EdgeSettings  # noqa: E402

MSG = [{"role": "user", "content": "Write a short story about a robot learning to paint."}]


def raw_run(path: Path, fmt: str | None, threads: int, n_ctx: int, tokens: int, runs: int) -> list[tuple[float, int]]:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                          n_batch=min(512, n_ctx), seed=0, chat_format=fmt, verbose=False)
    llm.create_chat_completion(MSG, max_tokens=4, temperature=0)          # warm-up
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        r = llm.create_chat_completion(MSG, max_tokens=tokens, temperature=0)
        out.append((time.perf_counter() - t, r["usage"]["completion_tokens"]))
    llm.close()
    return out


def agent_run(client: openai.OpenAI, tokens: int, runs: int, *, stream: bool) -> list[tuple[float, int]]:
    client.chat.completions.create(model="local", messages=MSG, max_tokens=4, temperature=0)  # warm-up / load
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        if stream:
            chunks = list(client.chat.completions.create(model="local", messages=MSG, max_tokens=tokens,
                                                         temperature=0, stream=True,
                                                         stream_options={"include_usage": True}))
            n = chunks[-1].usage.completion_tokens
        else:
            n = client.chat.completions.create(model="local", messages=MSG, max_tokens=tokens,
                                               temperature=0).usage.completion_tokens
        out.append((time.perf_counter() - t, n))
    return out


def tps(rows: list[tuple[float, int]]) -> float:
    return statistics.median(n / s for s, n in rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=default_model.BUNDLED_REF)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ctx", type=int, default=1024)
    a = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="tg-bench-edge-"))
    edge = EdgeSettings(model=a.model, n_threads=a.threads, n_ctx_cap=a.ctx, data_dir=data)
    agent = EdgeAgent(Settings(data_dir=data, environment="test"), edge)
    lm = agent.runtime.resolve(agent.local)
    url, server, thread = start_app(build_edge_app(agent))
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    try:
        via = agent_run(client, a.tokens, a.runs, stream=False)
        via_stream = agent_run(client, a.tokens, a.runs, stream=True)
        agent.runtime.close()  # free the resident model before the raw run loads its own
        raw = raw_run(lm.path, lm.chat_format, a.threads, lm.n_ctx, a.tokens, a.runs)
        # Overhead: a 1-token request through the agent vs the same call raw.
        one_agent = [t for t, _ in agent_run(client, 1, 10, stream=False)]
        agent.runtime.close()
        one_raw = [t for t, _ in raw_run(lm.path, lm.chat_format, a.threads, lm.n_ctx, 1, 10)]
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
    res = {
        "model": str(lm.path.name), "threads": a.threads, "max_tokens": a.tokens, "runs": a.runs,
        "raw_tokens_per_s": round(tps(raw), 2),
        "agent_tokens_per_s": round(tps(via), 2),
        "agent_stream_tokens_per_s": round(tps(via_stream), 2),
        "ratio_agent_vs_raw": round(tps(via) / tps(raw), 3),
        "ratio_agent_stream_vs_raw": round(tps(via_stream) / tps(raw), 3),
        "agent_overhead_ms_per_request": round((statistics.median(one_agent) - statistics.median(one_raw)) * 1000, 2),
        "offload_decision_us": round(decide_us, 2),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

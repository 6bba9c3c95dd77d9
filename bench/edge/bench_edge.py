"""Edge benchmark, one run, figures side by side:

* tokens/s of the local model through the agent vs raw llama-cpp-python on the same model,
  threads, prompt (the agent's default system prompt included) and sampling, so every side
  generates the same tokens. Sides, interleaved run by run: raw (non-streamed), raw
  streamed, the agent non-streamed, and the agent streamed three ways: the openai SDK in
  this process (the figure this bench always printed), the SDK in a separate process, and
  a plain SSE reader (httpx) in a separate process. A client in the bench's process
  competes with the model for the same GIL and cores, and the SDK parses every chunk
  into pydantic objects (~0.8 ms of CPU per chunk measured here); a separate process is
  how a real client runs, but on this 2-core machine it still competes for the cores.
  Per side: median and p10 tokens/s, the ratio of medians to raw, the median of
  run-by-run ratios (each run against the raw run just before it, which cancels the
  drift of a shared machine), and CPU per token (the bench process, and the client
  process where there is one), so the agent's own per-token cost is visible apart
  from the client's;
* the agent's own streaming cost per token, without the model's noise: the real agent
  app and provider with the model replaced by a thread that emits real-shaped chunks at
  the raw model's measured token interval, read by a plain socket client in a separate
  process; CPU of the event-loop thread and of the whole agent process per chunk, and
  that as a share of one raw token's time (the streamed ratio it costs at most);
* the agent's overhead per 1-token request; the offload decision time;
* the prompt cache: time to first token of a request sharing a ~1,500-token prefix with
  the one before it, against the first's (median of ``--cache-runs`` fresh prefixes);
* time to the first useful answer from a clean data dir: ``tiergate serve`` started as a
  subprocess until "What is the capital of France?" comes back containing "Paris"
  (the packages are installed; pip's own time is not in it).

    python bench/edge/bench_edge.py [--model bundled:smollm2-135m|PATH] [--threads 2] [--tokens 128] [--runs 9]
                                    [--skip-cache] [--skip-clean-start]

The agent runs in-process under uvicorn on loopback; requests go over real HTTP.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import llama_cpp  # noqa: E402
import openai  # noqa: E402

from tests.edge.conftest import start_app  # noqa: E402
from tiergate.settings import Settings  # noqa: E402
from tiergate_edge import default_model  # noqa: E402
from tiergate_edge.agent import EdgeAgent, build_edge_app  # noqa: E402
from tiergate_edge.llama_provider import DEFAULT_SYSTEM_PROMPT  # noqa: E402
from tiergate_edge.llama_runtime import Generation, LlamaRuntime  # noqa: E402
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


def raw_stream_once(llm: llama_cpp.Llama, tokens: int) -> tuple[float, int]:
    t = time.perf_counter()
    n = sum(1 for c in llm.create_chat_completion(RAW_MSG, max_tokens=tokens, stream=True, **RAW_KW)
            if c["choices"] and c["choices"][0]["delta"].get("content"))
    return time.perf_counter() - t, n


#: A client in its own process: reads a line per request from stdin, streams one answer,
#: prints [seconds, completion_tokens, its own CPU seconds].
_CLIENT = r'''
import json, sys, time
import httpx, openai
url, tokens, kind, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
body = {"model": "local", "messages": msg, "max_tokens": tokens, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True}}
sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
http = httpx.Client(timeout=120)
for _ in sys.stdin:
    t, c = time.perf_counter(), time.process_time()
    if kind == "sdk":
        n = list(sdk.chat.completions.create(**body))[-1].usage.completion_tokens
    else:
        last = None
        with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    last = line
        n = json.loads(last[6:])["usage"]["completion_tokens"]
    print(json.dumps([time.perf_counter() - t, n, time.process_time() - c]), flush=True)
'''


class ClientProcess:
    """A streaming client (``kind`` "sdk" or "sse") in a separate process."""

    def __init__(self, url: str, tokens: int, kind: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _CLIENT, url, str(tokens), kind, json.dumps(MSG)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.cpu = 0.0

    def __call__(self) -> tuple[float, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        s, n, self.cpu = json.loads(self.proc.stdout.readline())
        return s, n

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


@dataclass
class Side:
    run: Callable[[], tuple[float, int]]
    client: ClientProcess | None = None
    rows: list[tuple[float, int]] = field(default_factory=list)
    cpu_per_token: list[float] = field(default_factory=list)         # the bench process
    client_cpu_per_token: list[float] = field(default_factory=list)  # the client process

    def once(self) -> None:
        c = time.process_time()
        s, n = self.run()
        self.rows.append((s, n))
        self.cpu_per_token.append((time.process_time() - c) / n)
        if self.client is not None:
            self.client_cpu_per_token.append(self.client.cpu / n)


def interleaved(sides: dict[str, Side], runs: int) -> None:
    """Every side once per round, the order rotating from round to round, so drift in the
    machine's speed (2 shared cores) lands on all of them alike."""
    order = list(sides.values())
    for side in order:  # warm-up: model loaded, connections open
        side.run()
    for r in range(runs):
        for side in order[r % len(order):] + order[:r % len(order)]:
            side.once()


def tps(rows: list[tuple[float, int]]) -> float:
    return statistics.median(n / s for s, n in rows)


def p10(rows: list[tuple[float, int]]) -> float:
    """The slow tail of tokens/s (the 10th percentile: few runs, so no p99)."""
    vals = sorted(n / s for s, n in rows)
    return vals[max(0, int(len(vals) * 0.1) - 1)] if len(vals) > 1 else vals[0]


def throughput_report(sides: dict[str, Side]) -> dict[str, dict[str, float | None]]:
    raw = sides["raw"]
    out: dict[str, dict[str, float | None]] = {}
    for name, side in sides.items():
        # Each run against the raw run of the same round.
        pairs = [(n / s) / (rn / rs) for (s, n), (rs, rn) in zip(side.rows, raw.rows, strict=True)]
        out[name] = {
            "tokens_per_s_median": round(tps(side.rows), 2), "tokens_per_s_p10": round(p10(side.rows), 2),
            "ratio_vs_raw": round(tps(side.rows) / tps(raw.rows), 3),
            "ratio_vs_raw_run_by_run_median": round(statistics.median(pairs), 3),
            "cpu_ms_per_token": round(statistics.median(side.cpu_per_token) * 1000, 3),
            "client_cpu_ms_per_token": (round(statistics.median(side.client_cpu_per_token) * 1000, 3)
                                        if side.client_cpu_per_token else None),
        }
    return out


def print_table(rows: dict[str, dict[str, float | None]]) -> None:
    cols = ["tokens_per_s_median", "tokens_per_s_p10", "ratio_vs_raw", "ratio_vs_raw_run_by_run_median",
            "cpu_ms_per_token", "client_cpu_ms_per_token"]
    heads = ["tok/s med", "tok/s p10", "ratio", "ratio run-by-run", "cpu ms/tok", "client cpu ms/tok"]
    print(f"{'side':28s}" + "".join(f"{h:>18s}" for h in heads))
    for name, r in rows.items():
        print(f"{name:28s}" + "".join(f"{'-' if r[c] is None else r[c]:>18}" for c in cols))


class _EmittingRuntime(LlamaRuntime):
    """The runtime with the model replaced by a thread emitting a chunk every ``gap`` s (as
    llama-cpp-python shapes them): what the agent itself costs per streamed token."""

    gap = 0.011

    def generate(self, lm, kwargs, cancelled, on_chunk=None):  # type: ignore[no-untyped-def]
        out = Generation(prompt_tokens=30)
        for i in range(kwargs["max_tokens"]):
            time.sleep(self.gap)
            delta = {"role": "assistant", "content": " word"} if i == 0 else {"content": " word"}
            out.completion_tokens += 1
            if on_chunk is not None:
                on_chunk({"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1, "model": "local",
                          "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]})
            if cancelled.is_set():
                break
        if on_chunk is not None:
            on_chunk({"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1, "model": "local",
                      "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]})
        out.finish_reason = "length"
        return out


_SOCKET_CLIENT = r'''
import json, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = json.dumps({"model": "local", "max_tokens": n, "stream": True,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
req = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
       b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
for _ in sys.stdin:
    s = socket.create_connection((host, port))
    s.sendall(req)
    buf = b""
    while b"[DONE]" not in buf[-64:]:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    print(buf.count(b"data: "), flush=True)
'''


def stream_cost(model: str, gap_s: float, chunks: int, runs: int) -> dict[str, float]:
    """CPU the agent spends per streamed chunk (loop thread, whole process), model aside."""
    data = Path(tempfile.mkdtemp(prefix="tg-bench-stream-"))
    agent = EdgeAgent(Settings(data_dir=data, environment="test"),
                      EdgeSettings(model=model, n_threads=1, data_dir=data))
    agent.runtime = _EmittingRuntime(models_dir=agent.edge.models_dir)
    agent.runtime.gap = gap_s
    url, server, thread = start_app(build_edge_app(agent))
    host, port = url.removeprefix("http://").split(":")
    proc = subprocess.Popen([sys.executable, "-c", _SOCKET_CLIENT, host, port, str(chunks)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    clock = time.pthread_getcpuclockid(thread.ident)  # type: ignore[arg-type]
    loop_us, proc_us = [], []
    try:
        for r in range(runs + 1):
            c, lc = time.process_time(), time.clock_gettime(clock)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            events = int(proc.stdout.readline())
            if r:  # the first is a warm-up
                loop_us.append((time.clock_gettime(clock) - lc) / chunks * 1e6)
                proc_us.append((time.process_time() - c) / chunks * 1e6)
    finally:
        proc.stdin.close()
        proc.wait(10)
        server.should_exit = True
        thread.join(10)
    return {"token_interval_ms": round(gap_s * 1000, 2), "chunks": chunks, "events": events,
            "loop_thread_cpu_us_per_chunk_median": round(statistics.median(loop_us), 1),
            "loop_thread_cpu_us_per_chunk_p90": round(sorted(loop_us)[int(len(loop_us) * 0.9) - 1], 1),
            "process_cpu_us_per_chunk_median": round(statistics.median(proc_us), 1),
            "process_cpu_share_of_a_raw_token": round(statistics.median(proc_us) / (gap_s * 1e6), 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=default_model.BUNDLED_REF)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--cache-runs", type=int, default=3)
    ap.add_argument("--prefix-tokens", type=int, default=1500)
    ap.add_argument("--skip-cache", action="store_true", help="skip the prompt-cache TTFT step")
    ap.add_argument("--skip-clean-start", action="store_true", help="skip the clean-start step")
    a = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="tg-bench-edge-"))
    edge = EdgeSettings(model=a.model, n_threads=a.threads, n_ctx_cap=a.ctx, data_dir=data)
    agent = EdgeAgent(Settings(data_dir=data, environment="test"), edge)
    lm = agent.runtime.resolve(agent.local)
    url, server, thread = start_app(build_edge_app(agent))
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    clients = {kind: ClientProcess(url, a.tokens, kind) for kind in ("sdk", "sse")}
    res: dict[str, object] = {"model": str(lm.path.name), "threads": a.threads, "max_tokens": a.tokens,
                              "runs": a.runs}
    try:
        llm = raw_llm(lm.path, lm.chat_format, a.threads, lm.n_ctx)
        sides = {
            "raw": Side(lambda: raw_once(llm, a.tokens)),
            "raw streamed": Side(lambda: raw_stream_once(llm, a.tokens)),
            "agent": Side(lambda: agent_once(client, a.tokens, stream=False)),
            "agent streamed, SDK in-proc": Side(lambda: agent_once(client, a.tokens, stream=True)),
            "agent streamed, SDK process": Side(clients["sdk"], clients["sdk"]),
            "agent streamed, SSE process": Side(clients["sse"], clients["sse"]),
        }
        interleaved(sides, a.runs)
        table = throughput_report(sides)
        res["throughput"] = table
        res["agent_stream_cost_without_model"] = stream_cost(a.model, 1 / tps(sides["raw"].rows), 200, 9)
        # Overhead: a 1-token request through the agent vs the same call raw.
        one_raw, one_agent = [], []
        for _ in range(10):
            one_raw.append(raw_once(llm, 1)[0])
            one_agent.append(agent_once(client, 1, stream=False)[0])
        llm.close()
        res["agent_overhead_ms_per_request"] = round(
            (statistics.median(one_agent) - statistics.median(one_raw)) * 1000, 2)
        if not a.skip_cache:
            firsts, seconds, prefix_n = cache_run(client, a.cache_runs, a.prefix_tokens)
            res |= {"prompt_cache_prefix_tokens": prefix_n,
                    "prompt_cache_ttft_first_ms_median": round(statistics.median(firsts) * 1000, 1),
                    "prompt_cache_ttft_second_ms_median": round(statistics.median(seconds) * 1000, 1),
                    "prompt_cache_ttft_ratio": round(statistics.median(seconds) / statistics.median(firsts), 4)}
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
        res["offload_decision_us"] = round((time.perf_counter() - t) / n * 1e6, 2)
    finally:
        for c in clients.values():
            c.close()
        server.should_exit = True
        thread.join(10)
    if not a.skip_clean_start:
        up_s, useful_s = first_useful_answer(a.threads)
        res |= {"clean_start_port_up_s": round(up_s, 2), "clean_start_first_useful_answer_s": round(useful_s, 2)}
    print_table(res["throughput"])  # type: ignore[arg-type]
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

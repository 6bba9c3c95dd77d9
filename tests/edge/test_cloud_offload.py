"""Offload against the real cloud gateway (core app under uvicorn, upstream simulator behind):
capability-based offload, fallback and deferral while the cloud is stopped, recovery and
queue drain, and kill -9 of the agent mid-queue."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import openai

from tests.support.procs import free_port, spawn, stop, wait_for

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
HARD = "Analyze and compare the trade-offs of these two database designs and evaluate the root cause."


def until(check, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def prompts_seen(sim, text: str) -> int:
    return sum(1 for r in sim.requests() if text in str((r.get("body") or {}).get("messages")))


def test_capability_and_tier_based_offload(edge_agent, cloud, sim) -> None:
    agent = edge_agent(cloud.url)
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused")
    easy = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}], max_tokens=4)
    assert easy.headers["x-tiergate-model"] == "local" and sim.requests() == []
    # Tools are served locally now (grammar-constrained calls); images still need the cloud.
    tools = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "call the lookup tool"}], tools=TOOLS, max_tokens=32)
    assert tools.headers["x-tiergate-model"] == "local" and sim.requests() == []
    vision = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": IMAGE}}]}])
    assert vision.headers["x-tiergate-model"] == "cloud"
    assert "lacks vision" in vision.headers["x-tiergate-route-reason"]
    [seen] = sim.requests()
    assert seen["body"]["messages"][0]["content"][1]["type"] == "image_url"
    hard = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": HARD}])
    assert hard.headers["x-tiergate-model"] == "cloud" and "above local tier" in hard.headers["x-tiergate-route-reason"]
    assert "echo:" in hard.parse().choices[0].message.content
    forced = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": HARD}], max_tokens=3,
        extra_headers={"x-tiergate-offload": "local"})
    assert forced.headers["x-tiergate-model"] == "local" and "override local" in forced.headers["x-tiergate-route-reason"]
    # Streaming through the offload.
    chunks = list(client.chat.completions.create(model="auto", messages=[{"role": "user", "content": HARD}],
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo:") and chunks[-1].usage is not None


def test_cloud_stopped_fallback_deferral_then_recovery_and_drain(edge_agent, cloud, sim) -> None:
    agent = edge_agent(cloud.url)
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused", max_retries=0)
    cloud.stop()
    # A request that fails at connect time marks the cloud down at once and falls back locally.
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": HARD}],
                                                           max_tokens=3)
    assert raw.headers["x-tiergate-model"] == "local"
    assert agent.agent.health.state == "down"
    # Now planned as a local fallback directly.
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": HARD}],
                                                           max_tokens=3)
    assert "cloud down; local fallback" in raw.headers["x-tiergate-route-reason"]
    # Only the cloud can read images: 503 with the reason, or 202 when deferral is allowed.
    body = {"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "deferred-" + uuid.uuid4().hex}, {"type": "image_url", "image_url": {"url": IMAGE}}]}]}
    r = httpx.post(agent.base_url + "/chat/completions", json=body, timeout=30)
    assert r.status_code == 503 and r.json()["error"]["code"] == "cloud_unreachable"
    r = httpx.post(agent.base_url + "/chat/completions", json=body, headers={"x-tiergate-defer": "allow"}, timeout=30)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job_id = r.json()["id"]
    assert httpx.get(f"{agent.base_url}/jobs/{job_id}", timeout=10).json()["status"] == "queued"
    assert httpx.get(agent.url + "/health", timeout=10).json()["edge"]["cloud"]["state"] == "down"
    restarted = time.monotonic()
    cloud.start()
    until(lambda: httpx.get(f"{agent.base_url}/jobs/{job_id}", timeout=10).json()["status"] == "done",
          what="deferred job drained")
    assert time.monotonic() - restarted < 15
    job = httpx.get(f"{agent.base_url}/jobs/{job_id}", timeout=10).json()
    assert job["result"]["object"] == "chat.completion"
    assert prompts_seen(sim, body["messages"][0]["content"][0]["text"]) == 1
    assert agent.agent.health.state == "up"


def _agent_proc(tmp: Path, tiny: Path, cloud_url: str, port: int, n: int):
    env = {"TIERGATE_DATA_DIR": str(tmp / "agent-data"), "TIERGATE_EDGE_PROBE_BACKOFF_MIN_S": "0.2",
           "TIERGATE_EDGE_PROBE_BACKOFF_MAX_S": "0.5", "TIERGATE_EDGE_PROBE_INTERVAL_S": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}
    p = spawn([sys.executable, "-m", "tiergate.cli", "edge", "--model", str(tiny), "--cloud", cloud_url,
               "--port", str(port), "--threads", "1"], log=tmp / f"agent-{n}.log", env=env)
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200, timeout=30,
             what="edge agent", proc=p)
    return p


def test_kill_9_mid_queue_then_restart_completes_every_job_exactly_once(tiny_gguf, cloud, sim, tmp_path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    agent = _agent_proc(tmp_path, tiny_gguf, cloud.url, port, 1)
    try:
        cloud.stop()
        prompts = [f"job-{i}-{uuid.uuid4().hex}" for i in range(6)]
        ids = []
        for text in prompts:
            image = {"type": "image_url", "image_url": {"url": IMAGE}}
            r = httpx.post(base + "/chat/completions", timeout=30, headers={"x-tiergate-defer": "allow"},
                           json={"model": "auto", "messages": [{"role": "user", "content": [
                               {"type": "text", "text": text}, image]}], "tools": TOOLS})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
    finally:
        stop(agent, sig=signal.SIGKILL)            # kill -9 right after the 202s
    assert agent.returncode == -signal.SIGKILL
    sim.set_default("*", {"delay_ms": 300})        # slow answers: the next kill lands mid-drain
    cloud.start()
    agent = _agent_proc(tmp_path, tiny_gguf, cloud.url, port, 2)
    try:
        until(lambda: len(sim.requests()) >= 1, what="drain started")
        os.killpg(agent.pid, signal.SIGKILL)       # kill -9 with a job in flight
        agent.wait(timeout=10)
    finally:
        stop(agent, sig=signal.SIGKILL)
    sim.set_default("*", None)
    agent = _agent_proc(tmp_path, tiny_gguf, cloud.url, port, 3)
    try:
        def all_done() -> bool:
            return all(httpx.get(f"{base}/jobs/{i}", timeout=10).json()["status"] == "done" for i in ids)

        until(all_done, timeout=40, what="all jobs done")
        for job_id, text in zip(ids, prompts, strict=True):
            job = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
            assert job["status"] == "done" and job["result"]["object"] == "chat.completion"
            assert job["result"]["choices"][0]["message"].get("tool_calls")   # the cloud model used the tool
            # Exactly once upstream: a job in flight at the kill is re-sent with its
            # Idempotency-Key, and the cloud replays the first answer instead of paying twice.
            assert prompts_seen(sim, text) == 1
        counts = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["edge"]["queue"]
        assert counts == {"queued": 0, "running": 0, "done": len(ids), "failed": 0}
    finally:
        stop(agent, sig=signal.SIGKILL)


def test_weak_local_answer_escalates_to_the_cloud(edge_agent, cloud, sim) -> None:
    """Local first, scored by the cascade scorer: the tiny model's random text is not the
    JSON the prompt asks for, so the answer goes up to the cloud; with escalation off the
    local answer stands."""
    agent = edge_agent(cloud.url)
    until(lambda: agent.agent.health.is_up, what="cloud seen up")
    sim.script("*", [{"content": '{"name": "Ada", "age": 36}'}])
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused")
    ask = [{"role": "user", "content": "Reply in JSON with the keys name and age."}]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask)
    assert raw.headers["x-tiergate-model"] == "cloud", raw.parse().model_extra
    assert raw.parse().choices[0].message.content == '{"name": "Ada", "age": 36}'
    assert "weak answers escalate" in raw.headers["x-tiergate-route-reason"]
    steps = raw.parse().model_extra["tiergate_cascade"]["steps"]
    assert [s["model"] for s in steps] == ["local", "cloud"]
    assert "invalid_json" in steps[0]["reasons"]
    assert prompts_seen(sim, "keys name and age") == 1

    plain = edge_agent(cloud.url, escalate_poor_answers=False)
    until(lambda: plain.agent.health.is_up, what="cloud seen up")
    raw = openai.OpenAI(base_url=plain.base_url, api_key="unused").chat.completions.with_raw_response.create(
        model="auto", messages=ask)
    assert raw.headers["x-tiergate-model"] == "local"
    assert prompts_seen(sim, "keys name and age") == 1

"""Cold start: import the Lambda handler module and serve the first request, in a fresh
process, N times; beside it, ``import litellm`` alone (what a LiteLLM-based function pays).

    python bench/cold_start/run.py [-n 5]

Starts the shared harness's fast upstream on a free port; each trial is a new
interpreter that imports ``tiergate.handlers.api`` (native adapter catalog) and invokes
``handler`` with an API Gateway REST event. Bytecode is written by one warm-up trial first
(as the deployed layer and function asset ship it; a ``PYTHONDONTWRITEBYTECODE`` in the
caller's environment is dropped for the trials). Prints medians with min-max of wall and
CPU time (CPU is what the shared 2-core machine disturbs least), beside ``import fastapi``
(the floor of any FastAPI app) and ``import litellm``. Target: first response <= 500 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: ../shared/bench beside the repository (or beside any ancestor: worktrees live deeper).
SHARED_BENCH = next((p / "shared" / "bench" for p in ROOT.parents if (p / "shared" / "bench").is_dir()),
                    ROOT.parent / "shared" / "bench")
UPSTREAM = SHARED_BENCH / "upstream_sim.py"

TRIAL = r"""
import json, resource, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0 = time.perf_counter()
c0 = cpu()
import tiergate.handlers.api as h
t1 = time.perf_counter()
c1 = cpu()
ev = {"resource": "/{proxy+}", "path": "/v1/chat/completions", "httpMethod": "POST",
      "headers": {"content-type": "application/json", "authorization": "Bearer sk-cold"},
      "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
      "pathParameters": {"proxy": "v1/chat/completions"}, "stageVariables": None,
      "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "POST", "path": "/prod/v1/chat/completions",
                         "stage": "prod", "requestId": "r", "identity": {"sourceIp": "127.0.0.1"}},
      "body": json.dumps({"model": "sim", "messages": [{"role": "user", "content": "hi"}]}), "isBase64Encoded": False}
out = h.handler(ev, None)
t2 = time.perf_counter()
c2 = cpu()
assert out["statusCode"] == 200, out
print(json.dumps({"import_s": t1 - t0, "first_response_s": t2 - t0,
                  "import_cpu_s": c1 - c0, "first_response_cpu_s": c2 - c0}))
"""

IMPORT_ONLY = r"""
import json, os, time
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
t0 = time.perf_counter()
import {module}
print(json.dumps({{"import_s": time.perf_counter() - t0}}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(code: str, env: dict[str, str]) -> dict[str, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"trial failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    return res


def wait_for_upstream(port: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the upstream simulator did not start") from None
            time.sleep(0.1)


def fmt(vals: list[float]) -> str:
    return f"{statistics.median(vals) * 1000:7.0f} ms  [{min(vals) * 1000:.0f}-{max(vals) * 1000:.0f}]"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=7)
    ap.add_argument("--target-ms", type=float, default=500)
    args = ap.parse_args()
    port = free_port()
    up = subprocess.Popen([sys.executable, str(UPSTREAM), "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        wait_for_upstream(port, up)
        tmp = Path(tempfile.mkdtemp(prefix="tiergate-cold-"))
        cfg = tmp / "catalog.yaml"
        cfg.write_text("models:\n  - {name: sim, model: openai/sim, adapter: openai-compatible, tier: 1, "
                       f"api_base: 'http://127.0.0.1:{port}/v1'}}\n")
        env = {**os.environ, "TIERGATE_CONFIG": str(cfg), "TIERGATE_MASTER_KEY": "sk-cold",
               "TIERGATE_STORE": "memory", "TIERGATE_DATA_DIR": str(tmp / "data")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # any value, even "0", disables writing bytecode
        run(TRIAL, env)  # warm the bytecode cache once, as a deployed package would ship it
        trials, fastapi_, litellm_ = [], [], []
        for _ in range(args.n):  # interleaved, so a noisy moment hits every row alike
            trials.append(run(TRIAL, env))
            fastapi_.append(run(IMPORT_ONLY.format(module="fastapi"), env)["import_s"])
            if len(litellm_) < max(1, args.n // 2):
                litellm_.append(run(IMPORT_ONLY.format(module="litellm"), env)["import_s"])
    finally:
        up.terminate()
    col = {k: [t[k] for t in trials] for k in trials[0]}
    med = {k: statistics.median(v) for k, v in col.items()}
    print(f"cold start, {args.n} fresh processes each, native adapter (median [min-max]):")
    print(f"  tiergate handler import          wall {fmt(col['import_s'])}   cpu {fmt(col['import_cpu_s'])}")
    print(f"  tiergate import + first response wall {fmt(col['first_response_s'])}   "
          f"cpu {fmt(col['first_response_cpu_s'])}")
    print(f"  tiergate whole process           wall {fmt(col['process_s'])}")
    print(f"  import fastapi alone             wall {fmt(fastapi_)}")
    print(f"  import litellm alone             wall {fmt(litellm_)}")
    lmed = statistics.median(litellm_)
    print(f"  first response / import fastapi = {med['first_response_s'] / statistics.median(fastapi_):.2f}x, "
          f"/ import litellm = {med['first_response_s'] / lmed:.3f}x")
    met = med["first_response_s"] * 1000 <= args.target_ms
    print(f"  target: first response <= {args.target_ms:.0f} ms (median wall): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

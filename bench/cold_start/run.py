"""Cold start: import the Lambda handler module and serve the first request, in a fresh
process, N times; beside it, ``import litellm`` alone (what a LiteLLM-based function pays).

    python bench/cold_start/run.py [-n 5]

Starts the shared harness's fast upstream on a free port; each trial is a new
interpreter that imports ``tiergate.handlers.api`` (native adapter catalog) and invokes
``handler`` with an API Gateway REST event. Prints per-trial figures, medians and the
ratio to ``import litellm``. Target: <= 1 s to the first response.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT.parent / "shared" / "bench" / "upstream_sim.py"

TRIAL = r"""
import json, time
t0 = time.perf_counter()
import tiergate.handlers.api as h
t1 = time.perf_counter()
ev = {"resource": "/{proxy+}", "path": "/v1/chat/completions", "httpMethod": "POST",
      "headers": {"content-type": "application/json", "authorization": "Bearer sk-cold"},
      "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
      "pathParameters": {"proxy": "v1/chat/completions"}, "stageVariables": None,
      "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "POST", "path": "/prod/v1/chat/completions",
                         "stage": "prod", "requestId": "r", "identity": {"sourceIp": "127.0.0.1"}},
      "body": json.dumps({"model": "sim", "messages": [{"role": "user", "content": "hi"}]}), "isBase64Encoded": False}
out = h.handler(ev, None)
t2 = time.perf_counter()
assert out["statusCode"] == 200, out
print(json.dumps({"import_s": t1 - t0, "first_response_s": t2 - t0}))
"""

LITELLM = r"""
import json, os, time
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
t0 = time.perf_counter()
import litellm
print(json.dumps({"import_litellm_s": time.perf_counter() - t0}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(code: str, env: dict[str, str]) -> dict[str, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    args = ap.parse_args()
    port = free_port()
    up = subprocess.Popen([sys.executable, str(UPSTREAM), "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        tmp = Path(tempfile.mkdtemp(prefix="tiergate-cold-"))
        cfg = tmp / "catalog.yaml"
        cfg.write_text("models:\n  - {name: sim, model: openai/sim, adapter: openai-compatible, tier: 1, "
                       f"api_base: 'http://127.0.0.1:{port}/v1'}}\n")
        env = {**os.environ, "TIERGATE_CONFIG": str(cfg), "TIERGATE_MASTER_KEY": "sk-cold",
               "TIERGATE_STORE": "memory", "TIERGATE_DATA_DIR": str(tmp / "data"), "PYTHONDONTWRITEBYTECODE": "0"}
        run(TRIAL, env)  # warm the bytecode cache once, as a deployed package would ship it
        trials = [run(TRIAL, env) for _ in range(args.n)]
        lit = [run(LITELLM, env) for _ in range(max(1, args.n // 2))]
    finally:
        up.terminate()
    med = {k: statistics.median(t[k] for t in trials) for k in ("import_s", "first_response_s", "process_s")}
    lmed = statistics.median(t["import_litellm_s"] for t in lit)
    print(f"cold start, {args.n} fresh processes (median [min-max]):")
    for k in ("import_s", "first_response_s", "process_s"):
        vals = [t[k] for t in trials]
        print(f"  tiergate {k:<18} {med[k] * 1000:8.0f} ms  [{min(vals) * 1000:.0f}-{max(vals) * 1000:.0f}]")
    print(f"  import litellm alone       {lmed * 1000:8.0f} ms")
    print(f"  first response / import litellm = {med['first_response_s'] / lmed:.3f}x   "
          f"(target: first response <= 1000 ms: {'met' if med['first_response_s'] <= 1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

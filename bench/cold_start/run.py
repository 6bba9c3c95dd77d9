"""Cold start: import the Lambda handler module and serve the first request, in a fresh
process, N times; beside it, ``import litellm`` alone (what a LiteLLM-based function pays).

    python bench/cold_start/run.py [-n 7] [--baseline DIR] [--no-litellm]

Starts the shared harness's fast upstream on a free port; each trial is a new
interpreter that imports ``tiergate.handlers.api`` (native adapter catalog) and invokes
``handler`` with an API Gateway REST event. Bytecode is written by one warm-up trial first
(as the deployed layer and function asset ship it; a ``PYTHONDONTWRITEBYTECODE`` in the
caller's environment is dropped for the trials). Prints medians with min-max of wall and
CPU time (CPU is what the shared 2-core machine disturbs least), beside ``import fastapi``
(the floor of any FastAPI app) and ``import litellm``. Target: first response <= 500 ms.

``--baseline DIR`` (another checkout of the repository, e.g. ``git archive main | tar -x -C
/tmp/base``) runs the same trial on that tree's code, interleaved with this tree's, and prints
both beside the ratio of their medians and mins: how a change is measured on a shared machine,
where the load moves between runs but hits both trees of one run alike.
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


def tree_env(env: dict[str, str], tree: Path) -> dict[str, str]:
    """``env`` with ``tree``'s code first on the path (its ``functions/`` and ``edge/``)."""
    rest = env.get("PYTHONPATH")
    path = os.pathsep.join([str(tree / "functions"), str(tree / "edge")] + ([rest] if rest else []))
    return {**env, "PYTHONPATH": path}


def print_trials(label: str, trials: list[dict[str, float]]) -> dict[str, list[float]]:
    col = {k: [t[k] for t in trials] for k in trials[0]}
    print(f"  {label}")
    print(f"    handler import          wall {fmt(col['import_s'])}   cpu {fmt(col['import_cpu_s'])}")
    print(f"    import + first response wall {fmt(col['first_response_s'])}   cpu {fmt(col['first_response_cpu_s'])}")
    print(f"    whole process           wall {fmt(col['process_s'])}")
    return col


def print_ratios(new: dict[str, list[float]], base: dict[str, list[float]]) -> None:
    print("  this tree / baseline (ratio of medians, of mins):")
    for key, name in (("first_response_s", "first response wall"), ("first_response_cpu_s", "first response cpu"),
                      ("process_s", "whole process wall")):
        med = statistics.median(new[key]) / statistics.median(base[key])
        low = min(new[key]) / min(base[key])
        # Trial i of both trees ran back to back: the median of the pairs' differences
        # cancels most of a load that drifts during the run.
        paired = statistics.median(a - b for a, b in zip(new[key], base[key], strict=True)) * 1000
        print(f"    {name:20s} {med:.3f}x  {low:.3f}x   (median of paired differences {paired:+.0f} ms)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=7)
    ap.add_argument("--target-ms", type=float, default=500)
    ap.add_argument("--baseline", type=Path, help="another checkout: its code runs interleaved with this tree's")
    ap.add_argument("--no-litellm", action="store_true", help="skip the import litellm row (~3 s of CPU per trial)")
    args = ap.parse_args()
    if args.baseline is not None and not (args.baseline / "functions" / "tiergate").is_dir():
        raise SystemExit(f"--baseline {args.baseline}: no functions/tiergate there")
    port = free_port()
    up = subprocess.Popen([sys.executable, str(UPSTREAM), "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    load0 = os.getloadavg()[0]
    try:
        wait_for_upstream(port, up)
        tmp = Path(tempfile.mkdtemp(prefix="tiergate-cold-"))
        cfg = tmp / "catalog.yaml"
        cfg.write_text("models:\n  - {name: sim, model: openai/sim, adapter: openai-compatible, tier: 1, "
                       f"api_base: 'http://127.0.0.1:{port}/v1'}}\n")
        env = {**os.environ, "TIERGATE_CONFIG": str(cfg), "TIERGATE_MASTER_KEY": "sk-cold",
               "TIERGATE_STORE": "memory", "TIERGATE_DATA_DIR": str(tmp / "data")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # any value, even "0", disables writing bytecode
        here = tree_env(env, ROOT)
        base = tree_env(env, args.baseline) if args.baseline is not None else None
        for e in (here, base):  # warm the bytecode cache once, as a deployed package would ship it
            if e is not None:
                run(TRIAL, e)
        trials, base_trials, fastapi_, litellm_ = [], [], [], []
        for _ in range(args.n):  # interleaved, so a noisy moment hits every row alike
            trials.append(run(TRIAL, here))
            if base is not None:
                base_trials.append(run(TRIAL, base))
            fastapi_.append(run(IMPORT_ONLY.format(module="fastapi"), here)["import_s"])
            if not args.no_litellm and len(litellm_) < max(1, args.n // 2):
                litellm_.append(run(IMPORT_ONLY.format(module="litellm"), here)["import_s"])
    finally:
        up.terminate()
    print(f"cold start, {args.n} fresh processes each, native adapter (median [min-max]); "
          f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f}:")
    col = print_trials(f"this tree ({ROOT})", trials)
    if base_trials:
        print_ratios(col, print_trials(f"baseline ({args.baseline})", base_trials))
    med = statistics.median(col["first_response_s"])
    print(f"  import fastapi alone             wall {fmt(fastapi_)}")
    print(f"  first response / import fastapi = {med / statistics.median(fastapi_):.2f}x")
    if litellm_:
        print(f"  import litellm alone             wall {fmt(litellm_)}")
        print(f"  first response / import litellm = {med / statistics.median(litellm_):.3f}x")
    met = med * 1000 <= args.target_ms
    print(f"  target: first response <= {args.target_ms:.0f} ms (median wall): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

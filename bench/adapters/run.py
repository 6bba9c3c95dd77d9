"""Overhead per provider adapter, in one process: client CPU and wall time per call for
the native ``openai-compatible`` adapter, the ``litellm`` adapter, and a raw pooled
``aiohttp`` POST of the same body (the floor), against the loopback upstream simulator.

    python bench/adapters/run.py [-n 2000]

Prints per-case medians over interleaved rounds and each adapter's ratio to the raw POST.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import uvloop  # noqa: E402

from tests.support.upstream import UpstreamSim  # noqa: E402
from tiergate.config.catalog import ModelSpec  # noqa: E402
from tiergate.providers.base import ProviderCall  # noqa: E402
from tiergate.providers.litellm_adapter import LiteLLMProvider  # noqa: E402
from tiergate.providers.openai_compat import OpenAICompatProvider  # noqa: E402

MSGS = [{"role": "user", "content": "hello there, benchmark me please"}]


async def run(sim: UpstreamSim, n: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    native_spec = ModelSpec(name="b", id="b", model="openai/bench", tier=1, api_base=sim.openai_base,
                            adapter="openai-compatible")
    lite_spec = native_spec.model_copy(update={"adapter": "litellm"})
    native, lite = OpenAICompatProvider(), LiteLLMProvider()
    session = aiohttp.ClientSession()
    body = orjson.dumps({"model": "bench", "messages": MSGS})
    url = sim.openai_base + "/chat/completions"

    async def raw() -> None:
        async with session.post(url, data=body, headers={"content-type": "application/json",
                                                         "authorization": "Bearer k"}) as r:
            orjson.loads(await r.read())

    cases = {
        "raw aiohttp POST": raw,
        "native adapter": lambda: native.complete(ProviderCall(native_spec, {"messages": MSGS}, 10, "k")),
        "litellm adapter": lambda: lite.complete(ProviderCall(lite_spec, {"messages": MSGS}, 10, "k")),
    }
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            for _ in range(50):
                await fn()
            t, w = time.process_time(), time.perf_counter()
            for _ in range(n):
                await fn()
            out[name].append(((time.process_time() - t) / n * 1000, (time.perf_counter() - w) / n * 1000))
    await native.aclose()
    await lite.aclose()
    await session.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with UpstreamSim.start() as sim:
        res = uvloop.run(run(sim, args.n, args.rounds))
    floor = statistics.median(c for c, _ in res["raw aiohttp POST"])
    print(f"per call, median over {args.rounds} rounds of {args.n} (ms):")
    for name, rows in res.items():
        cpu = statistics.median(c for c, _ in rows)
        wall = statistics.median(w for _, w in rows)
        print(f"  {name:<18} CPU {cpu:7.3f}   wall {wall:7.3f}   CPU vs raw POST {cpu / floor:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A gateway that has served known traffic, for the dashboard and metrics tests.

``known_traffic(tmp_path, sim)`` serves a gateway (SQLite store, a master key, budgets
with tier allocations, a cascade policy) under uvicorn, makes virtual keys through the
admin API -- two tenants' API keys and a ``dashboard``-scope key of tenant ``acme`` --
and sends, through the official ``openai`` SDK: plain, streamed, retried, failing,
``auto`` and cascaded requests across four tiers. Tests then compare what the dashboard
and ``/metrics`` show with what ``/v1/usage`` and ``/v1/budget`` return.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.support.gateway import serve_app
from tiergate.compose import build_app
from tiergate.config import catalog as catalog_mod
from tiergate.settings import Settings

MASTER = "sk-master-dashboard"
CATALOG = """
models:
  - {name: small, model: openai/small-0, adapter: openai-compatible, tier: 0, api_base: "{sim}",
     input_cost_per_mtok: 0.1, output_cost_per_mtok: 0.2}
  - {name: fast, model: openai/fast-1, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 0.5, output_cost_per_mtok: 1.5}
  - {name: balanced, model: openai/balanced-2, adapter: openai-compatible, tier: 2, api_base: "{sim}",
     input_cost_per_mtok: 3, output_cost_per_mtok: 15}
  - {name: premium, model: openai/premium-3, adapter: openai-compatible, tier: 3, api_base: "{sim}",
     input_cost_per_mtok: 10, output_cost_per_mtok: 30}
  - {name: broken, model: openai/always-500, adapter: openai-compatible, tier: 4, api_base: "{sim}",
     input_cost_per_mtok: 0.6, output_cost_per_mtok: 1.6}
routing:
  fallback_up_tiers: 0
reliability:
  max_attempts_per_deployment: 2
  backoff_base_s: 0.01
  backoff_max_s: 0.02
cascades:
  default: {mode: escalate, tiers: [0, 1, 2], threshold: 0.7}
budgets:
  soft_limit_fraction: 0.8
  global: {daily_usd: 10, monthly_usd: 50}
  tenants: {acme: {daily_usd: 5, monthly_usd: 20}}
  tier_allocations: {0: 0.1, 1: 0.4, 2: 0.3, 3: 0.2}
"""


@dataclass
class Served:
    url: str
    app: Any
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (key id, secret)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {MASTER}"}, timeout=30)

    def client(self, name: str) -> openai.OpenAI:
        secret = MASTER if name == "master" else self.keys[name][1]
        return openai.OpenAI(base_url=self.url + "/v1", api_key=secret, max_retries=0, timeout=30)

    def api(self, secret: str, path: str) -> dict[str, Any]:
        r = httpx.get(self.url + path, headers={"authorization": f"Bearer {secret}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


def _ask(client: openai.OpenAI, model: str, text: str, **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)


def _stream(client: openai.OpenAI, model: str, text: str) -> str:
    out = []
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}],
                                                stream=True, stream_options={"include_usage": True}):
        for ch in chunk.choices:
            out.append(ch.delta.content or "")
    return "".join(out)


def send_known_traffic(s: Served, sim: Any) -> None:
    acme, beta = s.client("acme"), s.client("beta")
    for i in range(3):
        _ask(acme, "small", f"hello number {i}")
    _ask(acme, "fast", "summarize the plot of a short novel in two lines")
    _ask(acme, "fast", "another short question about the weather")
    _stream(acme, "fast", "stream me a sentence about rivers")
    sim.script("balanced-2", [{"status": 500}])  # one retry, then an answer
    _ask(acme, "balanced", "a question that is retried once")
    _ask(acme, "auto", "write a python function that reverses a list")
    sim.script("small-0", [{"content": ""}])  # an empty draft: the cascade escalates
    _ask(acme, "cascade", "explain briefly why the sky is blue")
    try:
        _ask(acme, "broken", "this deployment always fails")
    except openai.APIStatusError:
        pass
    for i in range(2):
        _ask(beta, "premium", f"a premium question {i}")
    _stream(beta, "premium", "stream a premium answer")
    _ask(s.client("master"), "tier:1", "the master's own request")


@contextmanager
def known_traffic(tmp_path: Path, sim: Any, **settings: Any) -> Iterator[Served]:
    cat = catalog_mod.parse(CATALOG.replace("{sim}", sim.openai_base), source="test")
    st = Settings(environment="test", master_key=MASTER, data_dir=tmp_path / "data", store="sqlite",
                  sqlite_path=tmp_path / "gw.sqlite3", key_cache_ttl_s=0, **settings)
    app = build_app(st, cat)
    with serve_app(app) as url:
        served = Served(url, app)
        with served.admin() as admin:
            for name, spec in {"acme": {"tenant": "acme", "daily_budget_usd": 2},
                               "beta": {"tenant": "beta"},
                               "acme-dash": {"tenant": "acme", "scopes": ["dashboard"]}}.items():
                r = admin.post("/v1/keys", json=spec)
                assert r.status_code == 201, r.text
                served.keys[name] = (r.json()["id"], r.json()["key"])
        send_known_traffic(served, sim)
        yield served

"""A gateway over real parts (upstream simulator, SQLite or dynalite) for fault tests, and
the invariants every request must leave behind:

* no hold is left (every reservation settled, released or charged),
* a usage record exists exactly when the upstream was called (one per request that
  reached it, plus one per attempt whose outcome was unknown and charged on its own),
* recorded spend never exceeds a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tiergate.compose import build_services
from tiergate.config import catalog as catalog_mod
from tiergate.gateway import Gateway
from tiergate.limits import budgets, usage
from tiergate.limits.admission import Principal
from tiergate.limits.store_admission import StoreAdmission
from tiergate.limits.virtual_keys import KeyCreate, KeyService
from tiergate.request import GatewayRequest
from tiergate.services import Services
from tiergate.settings import Settings
from tiergate.stores import open_store
from tiergate.stores.base import RecordStore

MASTER = "sk-master-faults"
#: Prices high enough that every request costs visibly: 1000 tokens = $1.
CATALOG = """
models:
  - name: cheap
    model: openai/cheap-a
    adapter: openai-compatible
    api_base: "{sim}"
    tier: 0
    input_cost_per_mtok: 1000
    output_cost_per_mtok: 1000
    max_output_tokens: 200
    timeout_s: {timeout}
  - name: dear
    model: openai/dear-b
    adapter: openai-compatible
    api_base: "{sim}"
    tier: 1
    input_cost_per_mtok: 4000
    output_cost_per_mtok: 4000
    max_output_tokens: 200
    timeout_s: {timeout}
  - name: nowhere
    model: openai/nowhere
    adapter: openai-compatible
    api_base: "http://127.0.0.1:9/v1"
    tier: 3
    input_cost_per_mtok: 1000
    output_cost_per_mtok: 1000
routing:
  fallback_up_tiers: {up}
reliability:
  max_attempts_per_deployment: {attempts}
  backoff_base_s: 0.01
  backoff_max_s: 0.02
  circuit_failure_threshold: 3
  circuit_cooldown_s: 60
budgets:
  reservation_ttl_s: 60
  soft_limit_fraction: {soft}
"""


@dataclass
class Rig:
    services: Services
    store: RecordStore
    admission: StoreAdmission
    principal: Principal
    key_id: str
    limit_usd: float

    @property
    def gateway(self) -> Gateway:
        return Gateway(self.services)

    def request(self, content: str = "hello there", *, model: str = "cheap", **body: Any) -> GatewayRequest:
        cat = self.services.catalog
        return GatewayRequest.from_chat({"model": model, "messages": [{"role": "user", "content": content}], **body},
                                        aliases=cat.aliases, default_model=cat.routing.default_model)

    async def records(self) -> list[dict[str, Any]]:
        return await usage.query(self.store, key_id=self.key_id)

    async def budget(self) -> dict[str, Any]:
        rep = await budgets.report(self.store, self.admission.cfg, key=self.principal.metadata["key"],
                                   tenant=self.principal.tenant, now=self.admission._clock())
        return next(r for r in rep if r["scope"] == "key" and r["period"] == "month")

    async def assert_invariants(self, *, upstream_calls: int, records: int | None = None) -> list[dict[str, Any]]:
        """No hold left; the ledger's records match the upstream's calls; spend <= limit."""
        await self.admission.drain()
        counters = await self.store.scan_counters("budgets", "b#")
        left = {k.pk: st.holds for k, st in counters.items() if st.holds or st.reserved}
        assert left == {}, f"holds left behind: {left}"
        recs = await self.records()
        assert len(recs) == (upstream_calls if records is None else records), recs
        assert (upstream_calls > 0) == (len(recs) > 0)
        b = await self.budget()
        assert b["spent_usd"] <= self.limit_usd + 1e-9, b
        assert b["spent_usd"] >= round(sum(r["cost_usd"] for r in recs), 9) - 1e-9
        return recs

    async def aclose(self) -> None:
        await self.services.registry.aclose()
        await self.admission.aclose()


async def rig(sim: Any, settings_kw: dict[str, Any], *, limit_usd: float = 5.0, timeout: float = 30,
              attempts: int = 1, up: int = 0, soft: float = 1.0) -> Rig:
    settings = Settings(environment="test", master_key=MASTER, **settings_kw)
    text = CATALOG.format(sim=sim.openai_base, timeout=timeout, attempts=attempts, up=up, soft=soft)
    cat = catalog_mod.parse(text, source="faults")
    store = open_store(settings, create_tables=settings.dynamodb_endpoint_url is not None)
    keys = KeyService(store, cache_ttl_s=0)
    adm = StoreAdmission(settings, cat, store, keys=keys, owns_store=True)
    services = build_services(settings, cat, admission=adm)
    # Monthly: a daily limit would roll over at midnight UTC in the middle of a test.
    key, secret = await keys.create(KeyCreate(tenant="faults", monthly_budget_usd=limit_usd))
    principal = await adm.authenticate(f"Bearer {secret}")
    return Rig(services, store, adm, principal, key.key_id, limit_usd)

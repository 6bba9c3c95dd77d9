"""The edge agent's parts, wired: local runtime, cloud health, offload router, queue,
drain and usage sync; with their start/stop and the ``/health`` report.

:func:`build_edge_app` turns an :class:`EdgeAgent` into the core FastAPI app (the same
routes as the cloud) with the edge's router, deferrer, admission wrapper and the jobs route.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
from collections.abc import Mapping
from typing import Any

import httpx
from fastapi import FastAPI

from tiergate.compose import build_app
from tiergate.config.adapters import LLAMA_CPP, OPENAI_COMPATIBLE, WORDLLAMA
from tiergate.config.cache import CacheConfig, ExactCacheConfig, SemanticCacheConfig
from tiergate.config.cascades import CascadePolicy
from tiergate.config.catalog import (
    Catalog,
    CatalogFile,
    LearnedConfig,
    ModelSpec,
    ReliabilityConfig,
    RoutingConfig,
    resolve,
)
from tiergate.limits.admission import Principal
from tiergate.limits.master_key import MasterKeyAdmission
from tiergate.limits.stored_responses import ResponseStore
from tiergate.providers.credentials import EnvKeyResolver
from tiergate.providers.registry import default_registry
from tiergate.request import GatewayRequest
from tiergate.routing.learned.serving import LearnedRouting
from tiergate.services import Services
from tiergate.settings import Settings
from tiergate.stores.sqlite import SqliteStore
from tiergate_edge import default_model, jobs_api
from tiergate_edge.cloud_client import CloudClient
from tiergate_edge.cloud_provider import WatchedCloudProvider
from tiergate_edge.connectivity import CloudHealth
from tiergate_edge.drain import Drainer
from tiergate_edge.history import StatusHistory
from tiergate_edge.jobs import JobQueue, JobStore, lock_queue_file
from tiergate_edge.local_embedder import BUNDLED as LOCAL_EMBEDDER
from tiergate_edge.plugin import register_local_embedder
from tiergate_edge.router import EdgeRouter
from tiergate_edge.settings import EdgeSettings
from tiergate_edge.usage_sync import RecordingAdmission, UsageOutbox, UsageSync

LOCAL_NAME = "local"
CLOUD_NAME = "cloud"
#: The packaged local embedder (``/v1/embeddings`` answered on the device).
EMBED_NAME = "local-embed"
ESCALATE_POLICY = "edge-escalate"
#: On a device the local model takes general chat too; harder or heavier work goes up.
#: What the llama-cpp adapter serves (grammar-constrained JSON, tool calls); no images.
LOCAL_CAPABILITIES = frozenset({"json", "json_schema", "tools"})
EDGE_TASK_TIERS = {"coding": 0, "general": 0, "analysis": 2, "premium": 3, "realtime": 4}


def edge_catalog(edge: EdgeSettings, base: Catalog | None = None) -> Catalog:
    """Two deployments: the local model (tier ``local_tier``) and, if configured, the cloud."""
    local = ModelSpec(name=LOCAL_NAME, model=edge.model, adapter=LLAMA_CPP, tier=edge.local_tier,
                      chat_format=edge.chat_format or default_model.default_chat_format(edge.model),
                      capabilities=LOCAL_CAPABILITIES, input_cost_per_mtok=0, output_cost_per_mtok=0)
    models = [local]
    if importlib.util.find_spec("wordllama") is not None:
        models.append(ModelSpec(name=EMBED_NAME, model=LOCAL_EMBEDDER, adapter=WORDLLAMA, tier=edge.local_tier,
                                capabilities=frozenset({"embeddings"}), input_cost_per_mtok=0,
                                output_cost_per_mtok=0))
    if edge.cloud_api_base:
        # The cloud bills itself; zero prices here keep local budgets to local spend. It is
        # another tiergate: it embeds, and speaks Anthropic Messages natively (an offloaded
        # /v1/messages request goes up unchanged, thinking blocks and all).
        models.append(ModelSpec(name=CLOUD_NAME, model="tiergate-cloud", adapter=OPENAI_COMPATIBLE, tier=4,
                                api_base=edge.cloud_api_base, upstream_model="auto",
                                capabilities=frozenset({"tools", "vision", "json", "json_schema", "messages_api"}),
                                input_cost_per_mtok=0, output_cost_per_mtok=0, timeout_s=edge.offload_timeout_s))
    routing = base.routing if base is not None else RoutingConfig(task_tiers=EDGE_TASK_TIERS,
                                                                   context_headroom=edge.context_headroom)
    if edge.router_artifact is not None:
        # The same artifact scores the local answer of the local-then-cloud cascade (when it has a scorer).
        routing = routing.model_copy(update={"learned": LearnedConfig(path=edge.router_artifact,
                                                                      quality_target=edge.quality_target)})
    # One attempt per deployment (the cloud retries upstream itself; the local model would
    # fail the same way twice) and a short circuit cooldown: the probe decides reachability.
    reliability = ReliabilityConfig(max_attempts_per_deployment=1, circuit_cooldown_s=2.0,
                                    attempt_timeout_s=edge.offload_timeout_s,
                                    deadline_s=max(180.0, edge.offload_timeout_s))
    cascades = {}
    if edge.cloud_api_base and edge.escalate_poor_answers:
        cascades[ESCALATE_POLICY] = CascadePolicy(mode="escalate", models=[LOCAL_NAME, CLOUD_NAME],
                                                  threshold=edge.escalate_threshold)
    cache = base.cache if base is not None else edge_cache(edge)
    return resolve(CatalogFile(models=models, routing=routing, reliability=reliability, cascades=cascades,
                               cache=cache), source="edge")


def edge_cache(edge: EdgeSettings) -> CacheConfig:
    if edge.cache == "off":
        return CacheConfig()
    exact = ExactCacheConfig(ttl_s=edge.cache_ttl_s)
    semantic = SemanticCacheConfig(ttl_s=edge.cache_ttl_s, threshold=edge.cache_threshold)
    return CacheConfig(exact=exact, semantic=semantic if edge.cache == "semantic" else None)


def edge_learned(edge: EdgeSettings, catalog: Catalog) -> LearnedRouting | None:
    """The offload artifact (``router_artifact``); a missing, corrupt or unknown-model one
    fails at startup with an ArtifactError (a CatalogError)."""
    if edge.router_artifact is None:
        return None
    return LearnedRouting(LearnedConfig(path=edge.router_artifact, quality_target=edge.quality_target), catalog)


class _EdgeKeys:
    """The cloud deployment's key is the agent's cloud key; others from the environment."""

    def __init__(self, cloud_key: str | None) -> None:
        self._cloud_key = cloud_key
        self._env = EnvKeyResolver()

    def __call__(self, spec: ModelSpec) -> str | None:
        if spec.name == CLOUD_NAME:
            return self._cloud_key
        return self._env(spec)


class EdgeAgent:
    def __init__(self, settings: Settings, edge: EdgeSettings, *, catalog: Catalog | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        from tiergate_edge.llama_provider import provider_from
        from tiergate_edge.llama_runtime import runtime_from

        self.settings, self.edge = settings, edge
        self.catalog = catalog or edge_catalog(edge)
        self.local = self.catalog.groups[LOCAL_NAME][0]
        self.cloud = self.catalog.groups[CLOUD_NAME][0] if CLOUD_NAME in self.catalog.groups else None
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(edge.offload_timeout_s, connect=5.0))
        self.runtime = runtime_from(edge)
        self.health = CloudHealth(edge.cloud_url, self.http, interval_s=edge.probe_interval_s,
                                  timeout_s=edge.probe_timeout_s, backoff_min_s=edge.probe_backoff_min_s,
                                  backoff_max_s=edge.probe_backoff_max_s)
        self.learned = edge_learned(edge, self.catalog)
        self.router = EdgeRouter(self.catalog, local=self.local, cloud=self.cloud, cloud_up=lambda: self.health.is_up,
                                 learned=self.learned,
                                 local_context=self.runtime.context_window, policy=edge.policy,
                                 headroom=self.catalog.routing.context_headroom,
                                 default_max_tokens=edge.default_max_tokens,
                                 escalate_policy=ESCALATE_POLICY if ESCALATE_POLICY in self.catalog.cascades else None)
        key = edge.cloud_key.get_secret_value() if edge.cloud_key else None
        self.keys = _EdgeKeys(key)
        self.cloud_client = CloudClient(edge.cloud_url or "http://127.0.0.1:9", key, self.http,
                                        timeout_s=edge.offload_timeout_s)
        queue_path = edge.resolved_queue_path
        self._queue_path = queue_path
        self.store = JobStore(queue_path)
        self.queue = JobQueue(self.store)
        self.outbox = UsageOutbox(queue_path)
        self.drainer = Drainer(self.queue, self.cloud_client, self.health, concurrency=edge.drain_concurrency,
                               lease_s=edge.job_lease_s)
        self.usage = UsageSync(self.outbox, self.cloud_client, self.health, interval_s=edge.usage_sync_interval_s,
                               batch=edge.usage_sync_batch)
        self.registry = default_registry()
        native = self.registry.get(OPENAI_COMPATIBLE)
        self.registry.register(OPENAI_COMPATIBLE,
                               lambda: WatchedCloudProvider(native, self.health, edge.cloud_api_base))
        self.registry.register(LLAMA_CPP, lambda: provider_from(self.runtime, edge))
        register_local_embedder(self.registry)
        # Responses API state on the device (the edge has no record store of its own).
        self.responses_db = SqliteStore(edge.data_dir / "responses.sqlite3")
        self.responses = ResponseStore(self.responses_db, ttl_s=settings.responses_ttl_s)
        self.history = StatusHistory(self.edge_status, interval_s=edge.history_interval_s)
        self._lock_fd: int | None = None

    # --- deferral (the chat route's Deferrer) -------------------------------------------

    async def defer(self, req: GatewayRequest, principal: Principal) -> str:
        job = await self.queue.enqueue(self.router.upstream_body(req),
                                       {"key_id": principal.key_id, "tenant": principal.tenant}, dict(req.hints),
                                       idem_key=req.hints.get("x-tiergate-idempotency-key"))
        if self.health.is_up:
            self.drainer.kick()
        return job.id

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, services: Services | None = None) -> None:
        self._lock_fd = lock_queue_file(self._queue_path)
        # Read the local model's header now (and assemble the bundled model on first run).
        await asyncio.to_thread(self.runtime.resolve, self.local)
        self.health.on_recovery(self.drainer.on_recovery)
        self.health.on_recovery(self.usage.on_recovery)
        await self.health.start()
        await self.drainer.start()
        await self.usage.start()
        self.history.start()

    async def stop(self, services: Services | None = None) -> None:
        await self.history.stop()
        await self.usage.stop()
        await self.drainer.stop()
        await self.health.stop()
        await self.http.aclose()
        self.store.close()
        self.outbox.close()
        await self.responses_db.aclose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def health_info(self) -> dict[str, Any]:
        try:
            ctx = self.runtime.context_window(self.local)
        except Exception as e:  # a broken model path is reported, not raised
            ctx, err = None, str(e)
        else:
            err = None
        return {"edge": {
            "policy": self.edge.policy,
            "local_model": {"name": self.local.name, "model": self.local.model, "context_window": ctx,
                            "error": err, **self.runtime.info()},
            "cloud": self.health.info(),
            "queue": self.store.counts(),
            "usage_outbox_pending": self.outbox.pending(),
            "usage_outbox_rejected": self.outbox.rejected(),
            "device": socket.gethostname(),
        }}


    # --- the dashboard's edge view and the edge gauges of /metrics -------------------------

    def edge_status(self) -> dict[str, Any]:
        return {"policy": self.edge.policy, "queue": self.store.counts(),
                "usage_outbox_pending": self.outbox.pending(), "sync_lag_s": round(self.outbox.oldest_age_s(), 3),
                "cloud_up": self.health.is_up, "cloud_configured": self.health.configured}

    def edge_history(self) -> list[Mapping[str, Any]]:
        return self.history.samples()


def build_edge_app(agent: EdgeAgent) -> FastAPI:
    """The core app with the edge's parts: the offload router, the recording admission
    (local usage syncs to the cloud), the offline queue and its jobs route."""
    master = agent.settings.master_key.get_secret_value() if agent.settings.master_key else None
    inner = MasterKeyAdmission(master)
    admission = RecordingAdmission(inner, agent.outbox, device=socket.gethostname())
    # The cascade runner gives local-then-cloud escalation of weak local answers.
    semantic = None
    if agent.catalog.cache.semantic is not None:
        from tiergate_edge.semantic import semantic_cache

        semantic = semantic_cache(agent.edge.data_dir)
    return build_app(agent.settings, agent.catalog, registry=agent.registry, admission=admission,
                     router=agent.router, credentials=agent.keys, deferrer=agent, jobs=agent.queue,
                     responses=agent.responses, semantic_cache=semantic, health_sources=[agent],
                     usage_log=inner.ledger, edge=agent,
                     extra_routers=[jobs_api.router], on_startup=[agent.start],
                     on_shutdown=[agent.stop])

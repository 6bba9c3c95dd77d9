"""Prometheus series for scrapers (``GET /metrics`` with ``Accept: text/plain`` or
OpenMetrics), generated with ``prometheus_client`` (the only module importing it).

Counters and histograms are fed by :meth:`PrometheusMetrics.emit`, one call per settled
request (the gateway's telemetry record); gauges of state (budget utilization, circuit
breakers, the edge queue) are read at scrape time from a :class:`Snapshot` the route
builds, so they are never stale and cost nothing per request.

Label sets are bounded by construction: ``model`` is a catalog model name (anything else
is ``other``), ``tier`` 0-4 (or ``none``), ``outcome`` one of :data:`OUTCOMES`, ``error``
a code of the gateway's error hierarchy (else ``other``), ``task_type`` a routing task
type, ``policy`` a catalog cascade policy, ``deployment`` a catalog deployment id, budget
scopes only ``global`` and ``tier`` (no tenants, keys, prompts or request ids).

Series names are a contract: the Grafana dashboard (``infra/grafana/tiergate.json``) and
its test read :data:`SERIES`.

Several worker processes (``tiergate serve --workers N``) are one server to a scraper:
the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory under the data dir)
before the workers start, so ``prometheus_client`` keeps every worker's counters and
histograms in memory-mapped files there, and a scrape answered by any worker sums all of
them (:class:`~prometheus_client.multiprocess.MultiProcessCollector`); a worker that died
or was replaced keeps its counts. The gauges need no multiprocess mode: they are not
``Gauge`` objects but read at scrape time -- budgets from the store the workers share
(the same for every worker), circuit breakers from the answering worker (breakers are
per process by design).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from tiergate.errors import GatewayError

OUTCOMES = ("ok", "cache_hit", "client_disconnected", "error")
TASK_TYPES = ("coding", "general", "analysis", "premium", "realtime")
CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

#: Every series name as scraped (counters with ``_total``; histograms as their base name).
SERIES = {
    "tiergate_requests_total": "requests settled, by model, tier and outcome",
    "tiergate_errors_total": "failed requests by error code",
    "tiergate_tokens_total": "tokens by type (input, output)",
    "tiergate_cost_usd_total": "actual cost in USD",
    "tiergate_cache_hits_total": "requests answered from the cache",
    "tiergate_cache_saved_usd_total": "cost the cache saved, in USD",
    "tiergate_retries_total": "upstream attempts beyond the first",
    "tiergate_fallbacks_total": "requests answered by a fallback deployment",
    "tiergate_routing_decisions_total": "requests by classified task type and the tier that answered",
    "tiergate_cascade_requests_total": "cascaded requests by policy",
    "tiergate_cascade_steps_total": "cascade steps run, by policy (steps - requests = escalations)",
    "tiergate_request_duration_seconds": "request latency (admission to settlement)",
    "tiergate_time_to_first_token_seconds": "streams: admission to the first chunk",
    "tiergate_budget_utilization_percent": "spent + reserved over limit, global and tier scopes",
    "tiergate_budget_limit_usd": "budget limits, global and tier scopes",
    "tiergate_circuit_state": "circuit breaker per deployment: 0 closed, 1 half-open, 2 open",
    "tiergate_edge_queue_jobs": "edge: deferred jobs by state",
    "tiergate_edge_usage_outbox_pending": "edge: usage records not yet synced to the cloud",
    "tiergate_edge_cloud_up": "edge: 1 when the cloud gateway is reachable",
}


def error_codes() -> frozenset[str]:
    """The ``code`` of every class in the error hierarchy: the ``error`` label's values."""
    out: set[str] = set()
    todo: list[type[GatewayError]] = [GatewayError]
    while todo:
        cls = todo.pop()
        if cls.code:
            out.add(cls.code)
        todo.extend(cls.__subclasses__())
    return frozenset(out)


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` when this process's metrics live there: the variable was
    set before ``prometheus_client`` was imported (the library chooses its value storage at
    import) and names a directory; else None (per-process counters)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path or values.ValueClass is values.MutexValue or not os.path.isdir(path):
        return None
    return path


@dataclass(frozen=True, slots=True)
class Snapshot:
    """State read at scrape time (the route fills it from the services)."""

    circuits: Mapping[str, str] = field(default_factory=dict)        # deployment id -> state
    budgets: Iterable[Mapping[str, Any]] = ()                         # budgets.report rows
    edge: Mapping[str, Any] | None = None                             # edge agent status


class _Scrape:
    """What the encoder collects: the registry's series, then the snapshot's gauges. The
    text format gets no ``*_created`` samples (OpenMetrics carries them as metadata; in
    text 0.0.4 they would double the series for nothing); the library's switch for that
    is process-global, so they are dropped here instead."""

    def __init__(self, registry: Any, gauges: list[Metric], *, created: bool) -> None:
        self._registry, self._gauges, self._created = registry, gauges, created

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():  # fresh Metric objects on every collect
            if not self._created:
                metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric
        yield from self._gauges


class PrometheusMetrics:
    """A :class:`~tiergate.telemetry.Telemetry` sink with its own registry (no global state)."""

    def __init__(self, *, models: Iterable[str], deployments: Iterable[str] = (),
                 policies: Iterable[str] = ()) -> None:
        self._models = frozenset(models)
        self._deployments = frozenset(deployments)
        self._policies = frozenset(policies)
        self._codes = error_codes()
        self.registry = r = CollectorRegistry(auto_describe=True)
        #: What a scrape collects: this process's registry, or every worker's files.
        self._source: Any = r
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is not None:
            from prometheus_client.multiprocess import MultiProcessCollector

            self._source = MultiProcessCollector(None, self.multiprocess_dir)
        mt = ("model", "tier")
        self.requests = Counter("tiergate_requests", SERIES["tiergate_requests_total"], [*mt, "outcome"], registry=r)
        self.errors = Counter("tiergate_errors", SERIES["tiergate_errors_total"], [*mt, "error"], registry=r)
        self.tokens = Counter("tiergate_tokens", SERIES["tiergate_tokens_total"], [*mt, "type"], registry=r)
        self.cost = Counter("tiergate_cost_usd", SERIES["tiergate_cost_usd_total"], mt, registry=r)
        self.cache_hits = Counter("tiergate_cache_hits", SERIES["tiergate_cache_hits_total"], mt, registry=r)
        self.cache_saved = Counter("tiergate_cache_saved_usd", SERIES["tiergate_cache_saved_usd_total"], mt,
                                   registry=r)
        self.retries = Counter("tiergate_retries", SERIES["tiergate_retries_total"], mt, registry=r)
        self.fallbacks = Counter("tiergate_fallbacks", SERIES["tiergate_fallbacks_total"], mt, registry=r)
        self.routing = Counter("tiergate_routing_decisions", SERIES["tiergate_routing_decisions_total"],
                               ["task_type", "tier"], registry=r)
        self.cascades = Counter("tiergate_cascade_requests", SERIES["tiergate_cascade_requests_total"],
                                ["policy"], registry=r)
        self.cascade_steps = Counter("tiergate_cascade_steps", SERIES["tiergate_cascade_steps_total"],
                                     ["policy"], registry=r)
        self.latency = Histogram("tiergate_request_duration_seconds", SERIES["tiergate_request_duration_seconds"],
                                 [*mt, "outcome"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("tiergate_time_to_first_token_seconds",
                              SERIES["tiergate_time_to_first_token_seconds"], mt, buckets=TTFT_BUCKETS, registry=r)
        # (model, tier, outcome) -> the label children a request touches: the labels()
        # lookup (a lock and a dict per series) is paid once per combination, not per request.
        self._children: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        self._other_kids: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()

    # --- labels -----------------------------------------------------------------------

    def _model(self, name: Any) -> str:
        return name if name in self._models else "other"

    @staticmethod
    def _tier(tier: Any) -> str:
        return str(tier) if isinstance(tier, int) and 0 <= tier <= 4 else "none"

    @staticmethod
    def _outcome(outcome: Any) -> tuple[str, str | None]:
        text = str(outcome or "ok")
        if text.startswith("error"):
            return "error", text.partition(":")[2] or "internal_error"
        return (text if text in OUTCOMES else "ok"), None

    def _kids(self, model: str, tier: str, outcome: str) -> tuple[Any, ...]:
        key = (model, tier, outcome)
        kids = self._children.get(key)
        if kids is None:
            with self._lock:
                kids = (self.requests.labels(model, tier, outcome), self.latency.labels(model, tier, outcome),
                        self.tokens.labels(model, tier, "input"), self.tokens.labels(model, tier, "output"),
                        self.cost.labels(model, tier))
                self._children[key] = kids
        return kids

    # --- the sink ---------------------------------------------------------------------

    def emit(self, record: Mapping[str, Any]) -> None:
        model, tier = self._model(record.get("model")), self._tier(record.get("tier"))
        outcome, code = self._outcome(record.get("outcome"))
        requests, latency, tok_in, tok_out, cost = self._kids(model, tier, outcome)
        requests.inc()
        ms = record.get("latency_ms")
        if ms is not None:
            latency.observe(ms / 1000)
        if record.get("prompt_tokens"):
            tok_in.inc(record["prompt_tokens"])
        if record.get("completion_tokens"):
            tok_out.inc(record["completion_tokens"])
        if record.get("cost_usd"):
            cost.inc(record["cost_usd"])
        self._rare(record, model, tier, code)

    def _kid(self, metric: Any, *labels: str) -> Any:
        """A label child, cached: ``labels()`` takes a lock and builds a tuple each call."""
        key = (id(metric), labels)
        kid = self._other_kids.get(key)
        if kid is None:
            kid = self._other_kids[key] = metric.labels(*labels)
        return kid

    def _rare(self, record: Mapping[str, Any], model: str, tier: str, code: str | None) -> None:
        """The series most requests do not touch."""
        kid = self._kid
        if code is not None:
            kid(self.errors, model, tier, code if code in self._codes else "other").inc()
        ttft = record.get("ttft_ms")
        if ttft is not None:
            kid(self.ttft, model, tier).observe(ttft / 1000)
        attempts = record.get("attempts") or 0
        if attempts > 1:
            kid(self.retries, model, tier).inc(attempts - 1)
        if record.get("fallback"):
            kid(self.fallbacks, model, tier).inc()
        if record.get("cache_hit"):
            kid(self.cache_hits, model, tier).inc()
            saved = record.get("saved_cost_usd") or record.get("cache_saved_usd")
            if saved:
                kid(self.cache_saved, model, tier).inc(saved)
        task = record.get("task_type")
        if task is not None:
            kid(self.routing, task if task in TASK_TYPES else "other", tier).inc()
        policy = record.get("cascade_policy")
        if policy is not None and record.get("cascade_steps") is not None:
            policy = policy if policy in self._policies else "other"
            kid(self.cascades, policy).inc()
            kid(self.cascade_steps, policy).inc(record["cascade_steps"])

    # --- scrape -----------------------------------------------------------------------

    def render(self, accept: str | None, snapshot: Snapshot = Snapshot()) -> tuple[bytes, str]:
        """The exposition the ``Accept`` header asks for (OpenMetrics or text 0.0.4)."""
        encoder, content_type = choose_encoder(accept or "")
        scrape = _Scrape(self._source, self._gauges(snapshot), created=content_type.startswith("application/openmetrics"))
        return encoder(scrape), content_type  # type: ignore[arg-type]

    def _gauges(self, snap: Snapshot) -> list[Metric]:
        util = GaugeMetricFamily("tiergate_budget_utilization_percent",
                                 SERIES["tiergate_budget_utilization_percent"], labels=["scope", "id", "period"])
        limit = GaugeMetricFamily("tiergate_budget_limit_usd", SERIES["tiergate_budget_limit_usd"],
                                  labels=["scope", "id", "period"])
        for row in snap.budgets:
            if row.get("scope") not in ("global", "tier"):
                continue  # tenants and keys are unbounded: not labels
            labels = [str(row["scope"]), str(row["id"]), str(row["period"])]
            limit.add_metric(labels, float(row["limit_usd"]))
            if row.get("utilization_percentage") is not None:
                util.add_metric(labels, float(row["utilization_percentage"]))
        circuits = GaugeMetricFamily("tiergate_circuit_state", SERIES["tiergate_circuit_state"],
                                     labels=["deployment"])
        for dep in sorted(self._deployments):
            circuits.add_metric([dep], CIRCUIT_VALUES.get(snap.circuits.get(dep, "closed"), 0))
        out: list[Metric] = [util, limit, circuits]
        if snap.edge is not None:
            jobs = GaugeMetricFamily("tiergate_edge_queue_jobs", SERIES["tiergate_edge_queue_jobs"], labels=["state"])
            for state in ("queued", "running", "done", "failed"):
                jobs.add_metric([state], float((snap.edge.get("queue") or {}).get(state, 0)))
            out += [jobs,
                    GaugeMetricFamily("tiergate_edge_usage_outbox_pending",
                                      SERIES["tiergate_edge_usage_outbox_pending"],
                                      value=float(snap.edge.get("usage_outbox_pending") or 0)),
                    GaugeMetricFamily("tiergate_edge_cloud_up", SERIES["tiergate_edge_cloud_up"],
                                      value=1.0 if snap.edge.get("cloud_up") else 0.0)]
        return out

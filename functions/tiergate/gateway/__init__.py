"""The request path shared by every front door: plan -> admit -> execute -> settle.

Doors (``/v1/chat/completions``, ``/generate``, ``/code``, ...) build a
:class:`~tiergate.request.GatewayRequest` and call :meth:`Gateway.handle`; they get back a
:class:`Completed` answer, a :class:`Streaming` one, or a :class:`Deferred` job, and only
render it in their own shape. The gateway settles by itself: a completed answer is
settled (the usage record durable) before :meth:`Gateway.handle` returns, so before the
client sees it; a stream settles before its last event (``[DONE]``), or when the client
leaves -- also when it leaves before the stream was ever iterated. Every exit after
admission settles or releases its reservation exactly once, by what may have been
billed (:mod:`tiergate.execution.billing`): released when no provider was called,
charged at the reservation when an attempt's outcome is unknown, otherwise at the
actual usage. A retry after an unknown outcome first reserves its own worst case, and
the answer sent upstream is capped at what the reservation covers
(:mod:`tiergate.limits.estimate`).

The budget's tier ceiling (soft limit) is asked of admission before planning, so a
request is planned once; only the request whose own reservation first crosses the soft
limit is re-planned below the ceiling the reservation reported.

The package: this module is the path itself (:class:`Gateway`); :mod:`.results` holds
what a door gets back and renders the headers, :mod:`.admitted` an admitted request's
state, :mod:`.stream_run` a streamed answer and its one settlement.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from tiergate.cache.replay import StreamCollector, hit_response, replay_chunks
from tiergate.cache.service import NO_CACHE, Lookup
from tiergate.config.budgets import BudgetsConfig
from tiergate.config.catalog import ModelSpec
from tiergate.errors import GatewayError, NoRouteAvailable, OffloadUnavailable
from tiergate.execution.billing import Verdict, request_verdict
from tiergate.execution.executor import AttemptRecord, CallContext, ExecResult, tried
from tiergate.gateway.admitted import Admitted, capability, trace_fields
from tiergate.gateway.results import (
    SSE_DONE,
    Completed,
    Deferred,
    ResponseMeta,
    Streaming,
    dialect_of,
    header_safe,
    safe_headers,
    sse,
    usage_block,
)
from tiergate.gateway.stream_run import StreamRun
from tiergate.limits.admission import AdmissionRequest, Outcome, Principal, Ticket, new_request_id
from tiergate.limits.estimate import MIN_ANSWER_TOKENS, affordable_output, cap_output, reserve_prompt
from tiergate.limits.idempotency import Hit, request_hash
from tiergate.request import GatewayRequest, ModelRef, TraceParent
from tiergate.routing.affinity import response_tool_call, session_of
from tiergate.routing.plan import RoutePlan
from tiergate.services import Services

log = logging.getLogger(__name__)

#: Output tokens assumed for the worst-case budget estimate when neither the request
#: nor the catalog bounds the answer.
FALLBACK_MAX_OUTPUT = 4096
DEFER_HEADER = "x-tiergate-defer"
#: Front door -> the OpenTelemetry GenAI operation name (every other door is "chat").
GENAI_OPERATIONS = {"embeddings": "embeddings", "completions": "text_completion"}
_NO_BUDGETS = BudgetsConfig()

#: What a front door imports from here (the result types live in :mod:`.results`).
__all__ = ["DEFER_HEADER", "FALLBACK_MAX_OUTPUT", "GENAI_OPERATIONS", "SSE_DONE", "Completed", "Deferred", "Gateway",
           "ResponseMeta", "Streaming", "dialect_of", "header_safe", "safe_headers", "sse", "usage_block"]


class Gateway:
    def __init__(self, services: Services) -> None:
        self.s = services

    # --- entry point ------------------------------------------------------------------

    async def handle(self, req: GatewayRequest, principal: Principal) -> Completed | Streaming | Deferred:
        try:
            if req.stream:
                return await self.stream(req, principal)
            return await self.complete(req, principal)
        except OffloadUnavailable:
            if self.s.deferrer is not None and req.hint(DEFER_HEADER).lower() == "allow":
                return Deferred(await self.s.deferrer.defer(req, principal))
            raise

    async def count_tokens(self, req: GatewayRequest, principal: Principal,
                           estimate: Callable[[], dict[str, Any]]) -> Completed:
        """The input tokens of ``req`` (``/v1/messages/count_tokens``): counted by the plan's
        first deployment when it speaks ``req.native``'s dialect (Anthropic's own count: an
        upstream call Anthropic does not bill), else ``estimate()`` (no upstream call).

        Admitted as a free call -- the key's requests-per-minute slot, no budget reservation
        (:attr:`AdmissionRequest.free`) -- and settled like any request: one usage record
        (operation ``count_tokens``, 0 tokens, $0) and its telemetry; the headers say who counted."""
        plan = self.plan(req, principal)
        if plan.mode == "cascade" and not plan.candidates:  # counted where the cascade starts: its first step
            assert plan.cascade_policy is not None
            first = self.s.catalog.cascades[plan.cascade_policy].targets()[0]
            ref = ModelRef.parse(first, aliases=self.s.catalog.aliases, default=first)
            plan = self.plan(dataclasses.replace(req, ref=ref), principal)
        if not plan.candidates:
            raise NoRouteAvailable(f"No deployment to count tokens for '{plan.requested}'")
        spec, started, request_id = plan.candidates[0], time.perf_counter(), new_request_id()
        ticket = await self.s.admission.admit(principal, AdmissionRequest(
            request_id=request_id, deployment=spec, prompt_tokens=req.needs.prompt_tokens, max_output_tokens=0,
            estimate_usd=0.0, free=True))
        a = Admitted(plan, ticket, CallContext(request_id=request_id, deadline=time.monotonic()), started,
                      operation="count_tokens", trace=req.trace)
        try:
            counted = await self.s.executor.count_tokens(spec, req.native) if req.native is not None else None
        except BaseException as e:
            await self._fail(a, e)
            raise
        attempts = 0 if counted is None else 1
        await asyncio.shield(self._settle(a, Outcome(
            deployment=spec, prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
            latency_ms=(time.perf_counter() - started) * 1000, attempts=attempts, outcome="ok",
            operation="count_tokens")))
        how = (f"counted by {spec.name} (its own count_tokens: not billed)" if counted is not None
               else f"estimated by the gateway for {spec.name} (no upstream call)")
        meta = ResponseMeta(request_id, spec, attempts, f"{plan.reason}; {how}", 0.0, dict(ticket.headers))
        return Completed(counted if counted is not None else estimate(), meta)

    # --- planning and admission -------------------------------------------------------

    def plan(self, req: GatewayRequest, principal: Principal) -> RoutePlan:
        """The routing decision under the budget's current tier ceiling (no store access)."""
        return self.s.router.plan(req, principal, max_tier=self.s.admission.tier_ceiling(principal))

    async def planned(self, req: GatewayRequest, principal: Principal) -> tuple[RoutePlan, tuple[str, str] | None]:
        """The plan with session affinity applied: a request of a known session (or tool
        loop) goes first to the deployment that served the session's first request, while
        that deployment is usable. Returns the plan and the session to remember, if new."""
        plan = self.plan(req, principal)
        aff = self.s.affinity
        if aff is None or plan.mode != "single" or req.ref.kind == "model":
            return plan, None
        sess = session_of(req)
        if sess is None:
            return plan, None
        try:
            dep = await aff.lookup(principal.tenant, *sess)
        except Exception as e:  # affinity is an optimization: a store hiccup routes afresh
            log.warning("session affinity lookup failed: %r", e)
            return plan, None
        if dep is None:
            return plan, sess
        pinned = next((c for c in plan.candidates if c.deployment_id == dep), None) or self._usable(dep, req, principal)
        if pinned is None:
            return dataclasses.replace(plan, reason=f"{plan.reason}; session affinity: {dep} unusable now"), None
        chain = (pinned, *(c for c in plan.candidates if c.deployment_id != dep))
        return dataclasses.replace(plan, candidates=chain, tier=pinned.tier,
                                   reason=f"{plan.reason}; session affinity ({sess[0]}): stays on {dep}",
                                   extra={**plan.extra, "affinity": {"session": sess[0], "deployment": dep}}), None

    def _usable(self, deployment_id: str, req: GatewayRequest, principal: Principal) -> ModelSpec | None:
        spec = self.s.catalog.by_id.get(deployment_id)
        if spec is None or self.s.circuits.is_open(deployment_id):
            return None
        ok, _ = self.s.router.tier_candidates(spec.tier, principal, req.needs)
        return spec if any(c.deployment_id == deployment_id for c in ok) else None

    async def _remember(self, principal: Principal, sess: tuple[str, str] | None, spec: ModelSpec,
                        response: dict[str, Any] | None = None) -> None:
        aff = self.s.affinity
        if aff is None:
            return
        try:
            if sess is not None:
                await aff.remember(principal.tenant, *sess, spec.deployment_id)
            call = response_tool_call(response) if response is not None else None
            if call is not None:  # a tool loop starts here: its continuations come back to this deployment
                await aff.remember(principal.tenant, "tool", call, spec.deployment_id)
        except Exception as e:  # the answer stands; the next request of the session routes afresh
            log.warning("session affinity not stored: %r", e)

    @staticmethod
    def estimate(spec: ModelSpec, plan: RoutePlan, budgets: BudgetsConfig | None = None) -> tuple[int, int, float]:
        """(prompt tokens reserved, answer tokens reserved, worst-case cost) on ``spec``:
        the prompt with the estimate's margin (:mod:`tiergate.limits.estimate`)."""
        needs = plan.needs
        assert needs is not None
        cfg = budgets or _NO_BUDGETS
        p = reserve_prompt(needs.prompt_tokens, cfg.prompt_margin, cfg.prompt_margin_tokens)
        max_out = needs.max_output_tokens
        if max_out is None:  # 0 is a bound too (embeddings)
            max_out = spec.max_output_tokens or FALLBACK_MAX_OUTPUT
        return p, max_out, spec.cost_usd(p, max_out)

    async def _admit(self, req: GatewayRequest, principal: Principal, plan: RoutePlan) -> Admitted:
        started = time.perf_counter()
        request_id = new_request_id()
        budgets = self.s.catalog.budgets
        p, max_out, est = self.estimate(plan.candidates[0], plan, budgets)
        ticket = await self.s.admission.admit(principal, AdmissionRequest(
            request_id=request_id, deployment=plan.candidates[0], prompt_tokens=p, max_output_tokens=max_out,
            estimate_usd=est))
        deadline = time.monotonic() + self.s.catalog.reliability.deadline_s
        ctx = CallContext(request_id=request_id, deadline=deadline, client_gone=req.client_gone)
        a = Admitted(plan, ticket, ctx, started,
                      operation=GENAI_OPERATIONS.get(req.door, "chat"), prompt_reserved=p,
                      trace=req.trace)
        try:
            if ticket.max_tier is not None and plan.tier is not None and plan.tier > ticket.max_tier:
                # This reservation first crossed the soft limit: the reservation (sized for the
                # dearer model) stands and is replaced at settlement; the request goes cheaper.
                try:
                    a.plan = self.s.router.plan(req, principal, max_tier=ticket.max_tier)
                    a.notes.append(f"budget soft limit: downgraded to tier {a.plan.tier}")
                except GatewayError:
                    a.notes.append("budget soft limit: no cheaper tier available")
        except BaseException as e:
            await self._fail(a, e)  # nothing was called yet: the reservation is released
            raise

        async def reserve(spec: ModelSpec) -> Ticket:
            p2, out2, est2 = self.estimate(spec, a.plan, budgets)
            return await self.s.admission.admit(principal, AdmissionRequest(
                request_id=request_id, deployment=spec, prompt_tokens=p2, max_output_tokens=out2, estimate_usd=est2))

        async def prepare(spec: ModelSpec, body: dict[str, Any], attempts: list[AttemptRecord]
                          ) -> dict[str, Any] | None:
            # A retry after an unknown outcome reserves its own worst case first (the first
            # reservation stands for the attempt that may have been billed).
            if sum(r.unknown for r in attempts) >= len(a.tickets):
                a.extra.append(await reserve(spec))
            if req.operation != "chat":
                return body  # an embeddings body has no answer to cap
            cap = affordable_output(spec, a.tickets[-1].reserved_usd, a.prompt_reserved)
            if cap is not None and cap < self.estimate(spec, a.plan, budgets)[1]:
                # A dearer fallback than the reservation was sized for: reserve its worst case
                # instead (the reservation it replaces covered no call); if the budget cannot,
                # its answer is capped at what the reservation covers.
                try:
                    bigger = await reserve(spec)
                except GatewayError:
                    pass
                else:
                    await self._swap_last(a, bigger)
                    cap = affordable_output(spec, bigger.reserved_usd, a.prompt_reserved)
            if cap is not None and cap < min(MIN_ANSWER_TOKENS, a.plan.needs.max_output_tokens or MIN_ANSWER_TOKENS):
                return None  # on this deployment the reservation would not cover an answer worth having
            return cap_output(body, cap, spec.max_output_tokens)

        a.ctx.prepare = prepare
        return a

    async def _swap_last(self, a: Admitted, new: Ticket) -> None:
        """``new`` takes the place of the last reservation, which is released (it covered no
        call whose outcome is unknown)."""
        old = a.tickets[-1]
        if a.extra:
            a.extra[-1] = new
        else:
            a.ticket = new
        await asyncio.shield(self.s.admission.settle(old, Outcome(
            deployment=None, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_ms=0.0, attempts=0,
            outcome="released", upstream_called=False)))

    async def _settle(self, a: Admitted, outcome: Outcome, req: GatewayRequest | None = None,
                      ticket: Ticket | None = None) -> None:
        """Settle one reservation (durable when it returns) and publish the request's
        telemetry. With labels collected, the request's label record is written alongside
        (concurrently: one round trip of latency)."""
        t = ticket or a.ticket
        dep = outcome.deployment
        if self.s.labels is not None and dep is not None and req is not None:
            settled, labeled = await asyncio.gather(self.s.admission.settle(t, outcome), self.s.labels.record(
                a.ctx.request_id, t.principal, model=dep.name, deployment=dep.deployment_id, tier=dep.tier,
                messages=req.messages, router=a.plan.extra.get("router")), return_exceptions=True)
            if isinstance(labeled, Exception):  # a label is worth less than the answer: log, go on
                log.warning("label for %s not stored: %r", a.ctx.request_id, labeled)
            if isinstance(settled, BaseException):
                raise settled
        else:
            await self.s.admission.settle(t, outcome)
        # A failed request is reported under the deployment it was planned for.
        dep = outcome.deployment or a.plan.candidates[0]
        self.s.telemetry.emit({
            "request_id": a.ctx.request_id, "model": dep.name, "tier": dep.tier, "requested_model": a.plan.requested,
            "upstream_model": dep.wire_model, "provider": dep.model.partition("/")[0], "operation": a.operation,
            "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "cost_usd": t.reserved_usd if outcome.charge_reservation else outcome.cost_usd,
            "latency_ms": outcome.latency_ms, "ttft_ms": outcome.ttft_ms,
            "attempts": outcome.attempts, "fallback": outcome.fallback, "outcome": outcome.outcome,
            "cache_hit": outcome.cache_hit, "saved_usd": outcome.saved_usd, "task_type": outcome.capability,
            "budget_utilization_percent": t.budget_utilization_percent, **trace_fields(a.trace),
        })

    async def _settle_all(self, a: Admitted, final: Outcome | None, verdict: Verdict,
                          req: GatewayRequest | None = None) -> None:
        """Settle every reservation of the request: one per attempt whose outcome is unknown
        (charged at its reservation), then the last with ``final`` (the answer, or a known
        error). Shielded: a cancelled request still settles."""
        latency = (time.perf_counter() - a.started) * 1000
        unknown = [r for r in a.ctx.attempts if r.unknown]
        if a.ctx.in_flight:
            unknown.append(AttemptRecord("?", verdict.code, latency))
        tickets = a.tickets
        for i, t in enumerate(tickets):
            last = i == len(tickets) - 1
            if i < len(unknown) and (final is None or not last):
                oc = Outcome(deployment=t.deployment, prompt_tokens=t.reserved_tokens, completion_tokens=0,
                             cost_usd=t.reserved_usd, latency_ms=latency, attempts=tried(a.ctx.attempts),
                             outcome=f"unknown:{unknown[i].outcome}", capability=capability(a.plan),
                             charge_reservation=True)
            elif final is not None:
                oc = final
            else:
                oc = Outcome(deployment=None, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_ms=latency,
                             attempts=tried(a.ctx.attempts), outcome=f"error:{verdict.code}",
                             capability=capability(a.plan), upstream_called=verdict.upstream_called)
            await asyncio.shield(self._settle(a, oc, req if last and oc is final else None, t))

    async def _fail(self, a: Admitted, err: BaseException) -> None:
        """Settle a request that ended in ``err``: released if no provider was called,
        charged at the reservation for each attempt whose outcome is unknown."""
        await self._settle_all(a, None, request_verdict(err, a.ctx.attempts, a.ctx.in_flight))

    # --- non-streaming ------------------------------------------------------------------

    async def complete(self, req: GatewayRequest, principal: Principal) -> Completed:
        """A settled answer; with an ``Idempotency-Key``, a retry replays the first response
        instead of paying twice (a concurrent duplicate gets 409 or waits)."""
        idem = self.s.idempotency if req.idempotency_key else None
        if idem is None:
            return await self._complete(req, principal)
        assert req.idempotency_key is not None
        got = await idem.begin(principal.key_id, req.idempotency_key, request_hash(req.body))
        if isinstance(got, Hit):
            return Completed(got.body, _replay_meta(got), got.status, stored_headers=dict(got.headers),
                             dialect=dialect_of(got.body))
        try:
            async with idem.keep(got):  # the lease lives while this request does
                done = await self._complete(req, principal)
        except BaseException:
            await idem.fail(got)
            raise
        await idem.complete(got, done.status, done.response, done.headers)
        return done

    async def _complete(self, req: GatewayRequest, principal: Principal) -> Completed:
        plan, sess = await self.planned(req, principal)
        look = await self._cache_lookup(req, principal, plan)
        if look.hit:
            return await self._cache_hit(look, plan, principal, req.trace)
        if plan.mode == "cascade":
            return await self._keep(look, await self._cascade(req, principal, plan))
        a = await self._admit(req, principal, plan)
        try:
            r = await self.s.executor.execute(a.plan.candidates, req.upstream, a.ctx,
                                              prompt_estimate=req.needs.prompt_tokens, operation=req.operation,
                                              native=req.native)
        except BaseException as e:
            await self._fail(a, e)
            raise
        ok = Outcome(deployment=r.deployment, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                     cost_usd=r.cost_usd, latency_ms=(time.perf_counter() - a.started) * 1000,
                     attempts=tried(r.attempts), outcome="ok", capability=capability(a.plan),
                     fallback=r.deployment.deployment_id != a.plan.candidates[0].deployment_id)
        verdict = request_verdict(None, a.ctx.attempts, False)
        try:
            done = self._completed(a, r)
        except BaseException:
            # The provider answered (and bills it) but we could not render it: still charged.
            await self._settle_all(a, dataclasses.replace(ok, outcome="error:internal_error"), verdict, req)
            raise
        await self._settle_all(a, ok, verdict, req)
        await self._remember(principal, sess, r.deployment, r.response)
        return await self._keep(look, done)

    def _completed(self, a: Admitted, r: ExecResult) -> Completed:
        usage = r.response["usage"]  # a dict: the executor makes sure
        if r.dialect == "chat":
            usage.setdefault("prompt_tokens", r.prompt_tokens)
            usage.setdefault("completion_tokens", r.completion_tokens)
            usage.setdefault("total_tokens", r.prompt_tokens + r.completion_tokens)
        elif r.dialect == "embeddings":
            usage.setdefault("prompt_tokens", r.prompt_tokens)
            usage.setdefault("total_tokens", r.prompt_tokens)
        usage["cost_usd"] = round(r.cost_usd, 10)
        return Completed(r.response, a.meta(r.deployment, r.attempts, r.cost_usd), dialect=r.dialect)

    # --- streaming ----------------------------------------------------------------------

    async def stream(self, req: GatewayRequest, principal: Principal) -> Streaming:
        plan, sess = await self.planned(req, principal)
        look = await self._cache_lookup(req, principal, plan)
        if look.hit:
            return _as_stream(await self._cache_hit(look, plan, principal, req.trace), req.include_usage)
        if plan.mode == "cascade":
            return _as_stream(await self._keep(look, await self._cascade(req, principal, plan)), req.include_usage)
        a = await self._admit(req, principal, plan)
        try:
            h = await self.s.executor.open_stream(a.plan.candidates, req.upstream, a.ctx, native=req.native)
        except BaseException as e:
            await self._fail(a, e)
            raise
        ttft_ms = (time.perf_counter() - a.started) * 1000  # the handle holds the first chunk
        run = StreamRun(self._settle_all, self.s.circuits, a, h, req, ttft_ms)
        try:
            await self._remember(principal, sess, h.deployment)
        except BaseException:
            await run.aclose()
            raise
        meta = a.meta(h.deployment, h.attempts)
        meta.cache = look
        if h.dialect != "chat":  # a native stream is relayed as is, and never cached
            return Streaming(meta, run, True, h.dialect, run=run)
        chunks: AsyncIterator[dict[str, Any]] = run
        if look.storable:
            chunks = self._keep_stream(look, run, h.deployment)
        return Streaming(meta, chunks, req.include_usage, run=run)


    # --- the cache step (tiergate.cache) -------------------------------------------------

    async def _cache_lookup(self, req: GatewayRequest, principal: Principal, plan: RoutePlan) -> Lookup:
        cache = self.s.cache
        return NO_CACHE if cache is None else await cache.lookup(req, principal, plan)

    async def _cache_hit(self, look: Lookup, plan: RoutePlan, principal: Principal,
                         trace: TraceParent | None = None) -> Completed:
        """A hit costs nothing and takes no reservation (nor a rate-limit slot: it uses no
        upstream capacity); it is still a request of this key, recorded as one."""
        assert look.entry is not None and look.deployment is not None
        started, request_id, spec = time.perf_counter(), new_request_id(), look.deployment
        response = hit_response(look.entry.response, request_id, look.entry.cost_usd)
        usage = response.get("usage") or {}
        ticket = Ticket(request_id=request_id, principal=principal, deployment=spec, reserved_usd=0.0,
                        reserved_tokens=0)
        a = Admitted(plan, ticket, CallContext(request_id=request_id, deadline=time.monotonic()), started,
                      trace=trace)
        await asyncio.shield(self._settle(a, Outcome(
            deployment=spec, prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0), cost_usd=0.0,
            latency_ms=(time.perf_counter() - started) * 1000, attempts=0, outcome="cache_hit", cache_hit=True,
            saved_usd=look.entry.cost_usd, capability=capability(plan))))
        similar = f" (similarity {look.similarity:.3f})" if look.similarity is not None else ""
        meta = ResponseMeta(request_id, spec, 0, f"cache {look.status}{similar}: answered by {spec.name} "
                            f"{int(look.age_s or 0)}s ago", 0.0, cache=look)
        return Completed(response, meta)

    async def _keep(self, look: Lookup, done: Completed) -> Completed:
        """Store a fresh non-streamed answer (when the lookup says it may be kept)."""
        # A native-dialect answer (an Anthropic or Responses body) is not a chat completion: not kept.
        if look.storable and self.s.cache is not None and done.status == 200 and done.dialect == "chat":
            await self.s.cache.keep(look, done.response, done.deployment, done.cost_usd)
        done.meta.cache = look
        return done

    async def _keep_stream(self, look: Lookup, chunks: AsyncIterator[dict[str, Any]], spec: ModelSpec
                           ) -> AsyncIterator[dict[str, Any]]:
        """Forward a stream; store the answer it assembled only once it completed (the inner
        generator settled). A stream that failed or lost its client is not stored."""
        collected = StreamCollector()
        try:
            async for chunk in chunks:
                collected.add(chunk)
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        if collected.complete and self.s.cache is not None:
            answer = collected.completion()
            await self.s.cache.keep(look, answer, spec, float((answer.get("usage") or {}).get("cost_usd") or 0.0))

    # --- cascades -----------------------------------------------------------------------

    async def _cascade(self, req: GatewayRequest, principal: Principal, plan: RoutePlan) -> Completed:
        runner = self.s.cascades
        if runner is None:
            raise NoRouteAvailable(f"'{plan.requested}' needs the cascade engine, which is not enabled here")
        started = time.perf_counter()
        request_id = new_request_id()
        r = await runner.run(req, principal, policy_name=plan.cascade_policy, request_id=request_id,
                             max_tier=self.s.admission.tier_ceiling(principal))
        r.response.setdefault("id", request_id)
        meta = ResponseMeta(request_id, r.deployment, r.attempts, f"{plan.reason}; {r.stop_reason}", r.cost_usd,
                            cascade=r.header_value)
        if self.s.labels is not None:
            # Every step was settled as it ran; the steps' scores (and judge verdicts) become labels.
            try:
                await asyncio.shield(self.s.labels.record(
                    request_id, principal, model=r.deployment.name, deployment=r.deployment.deployment_id,
                    tier=r.deployment.tier, messages=req.messages, router=plan.extra.get("router"), steps=r.steps))
            except Exception as e:  # a label is worth less than the answer: log, go on
                log.warning("label for %s not stored: %r", request_id, e)
        # Every step was settled as it finished; only the request's telemetry is left.
        dep = r.deployment
        u = r.response.get("usage") or {}  # summed over every step's call
        self.s.telemetry.emit({"request_id": request_id, "model": dep.name, "tier": dep.tier,
                               "requested_model": plan.requested, "upstream_model": dep.wire_model,
                               "provider": dep.model.partition("/")[0], "operation": "chat",
                               "prompt_tokens": u.get("prompt_tokens"), "completion_tokens": u.get("completion_tokens"),
                               "cost_usd": r.cost_usd, "latency_ms": (time.perf_counter() - started) * 1000,
                               "attempts": r.attempts,
                               "cascade_policy": plan.cascade_policy, "cascade_steps": len(r.steps),
                               "outcome": "ok", "task_type": capability(plan), **trace_fields(req.trace)})
        return Completed(r.response, meta)


def _replay_meta(hit: Hit) -> ResponseMeta:
    # A replay's headers are the stored ones (Completed.stored_headers); the meta is a stub.
    from tiergate.config.catalog import ModelSpec as _Spec

    spec = _Spec(name=hit.headers.get("x-tiergate-model", "replay"), model="replay", id="replay", tier=0)
    return ResponseMeta(hit.headers.get("x-request-id", "replay"), spec, 0, "idempotent replay", replay=True)


def _as_stream(done: Completed, include_usage: bool) -> Streaming:
    """A cascade needs the whole answer to score it, and a cache hit has it already: stream
    the final answer as chunks (the same shape as a live stream's, usage chunk last)."""
    r = done.response

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        for chunk in replay_chunks(r, done.deployment.name):
            yield chunk

    return Streaming(done.meta, chunks(), include_usage)

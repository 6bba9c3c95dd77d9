// The dashboard page: sign in (the key is posted once; the session is an HttpOnly cookie),
// filters, and one render function per view over /dashboard/api/<view>. Every figure shown
// carries data-testid and its raw number in data-value (the browser test compares them
// with /v1/usage and /v1/budget).
"use strict";

const C = window.Charts;
const $ = (id) => document.getElementById(id);
const HDR = { "x-tiergate-dashboard": "1" };
const TIER_COLORS = { 0: C.PALETTE[1], 1: C.PALETTE[0], 2: C.PALETTE[2], 3: C.PALETTE[3], 4: C.PALETTE[5] };

const usd = (v) => (v === null || v === undefined ? "-" : "$" + Number(v).toFixed(6));
const ms = (v) => (v === null || v === undefined ? "-" : Number(v).toFixed(1) + " ms");
const pct = (v) => (v === null || v === undefined ? "-" : Number(v).toFixed(2) + "%");
const int = (v) => (v === null || v === undefined ? "-" : String(v));

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function card(label, value, fmt, testid) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label),
    el("div", { class: "value", "data-testid": testid, "data-value": JSON.stringify(value) }, fmt(value)));
}

function panel(title, ...children) {
  return el("section", { class: "panel" }, el("h3", {}, title), ...children);
}

function table(headers, rows) {
  const t = el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { class: h.num ? "num" : "" }, h.label)))));
  const tb = el("tbody");
  rows.forEach((r) => tb.append(el("tr", {}, ...r)));
  t.append(tb);
  return t;
}

function td(value, fmt, testid) {
  return el("td", { class: typeof value === "number" || (value === null && fmt) ? "num" : "", "data-testid": testid,
    "data-value": testid ? JSON.stringify(value) : undefined }, fmt ? fmt(value) : value);
}

function empty(text) { return el("p", { class: "empty" }, text); }

// --- api -------------------------------------------------------------------------------

async function api(path, opts) {
  const r = await fetch(path, { credentials: "same-origin", ...(opts || {}) });
  if (r.status === 401) { showSignin(); throw new Error("signed out"); }
  const body = await r.json();
  if (!r.ok) throw new Error((body.error && body.error.message) || r.statusText);
  return body;
}

function query() {
  const p = new URLSearchParams();
  p.set("period", $("f-period").value);
  if ($("f-tenant").value) p.set("tenant", $("f-tenant").value);
  if ($("f-model").value) p.set("model", $("f-model").value);
  return p.toString();
}

// --- session ---------------------------------------------------------------------------

function showSignin() { $("signin").hidden = false; $("app").hidden = true; $("logout").hidden = true; $("viewer").textContent = ""; }

async function start() {
  let who;
  try { who = await api("dashboard/api/session"); } catch (e) { $("load-error").textContent = e.message; return; }
  if (!who.signed_in) { showSignin(); return; }
  $("signin").hidden = true; $("app").hidden = false; $("logout").hidden = false;
  $("viewer").textContent = who.is_master ? "master key" : `key ${who.key_id} (tenant ${who.tenant})`;
  const tenant = $("f-tenant");
  tenant.replaceChildren();
  if (who.is_master) {
    tenant.append(el("option", { value: "" }, "All tenants"));
    who.tenants.forEach((t) => tenant.append(el("option", { value: t }, t)));
  } else {
    tenant.append(el("option", { value: who.tenant }, who.tenant));
    tenant.disabled = true;
  }
  const model = $("f-model");
  model.replaceChildren(el("option", { value: "" }, "All models"));
  who.models.forEach((m) => model.append(el("option", { value: m }, m)));
  window.tiergateSession = who;
  render();
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("signin-error").textContent = "";
  const key = $("key").value;
  const r = await fetch("dashboard/session", { method: "POST", credentials: "same-origin",
    headers: { ...HDR, "content-type": "application/json" }, body: JSON.stringify({ key }) });
  $("key").value = "";  // the key is not kept in the page
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    $("signin-error").textContent = (body.error && body.error.message) || "Sign-in failed";
    return;
  }
  start();
});

$("logout").addEventListener("click", async () => {
  await fetch("dashboard/logout", { method: "POST", credentials: "same-origin", headers: HDR });
  showSignin();
});

$("filters").addEventListener("submit", (ev) => { ev.preventDefault(); render(); });
window.addEventListener("hashchange", render);

// --- views -----------------------------------------------------------------------------

const VIEWS = { spend: renderSpend, budgets: renderBudgets, latency: renderLatency, routing: renderRouting, edge: renderEdge };

async function render() {
  const name = VIEWS[location.hash.slice(1)] ? location.hash.slice(1) : "spend";
  document.querySelectorAll("#tabs a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  $("load-error").textContent = "";
  const view = $("view");
  try {
    const data = await api(`dashboard/api/${name}?${query()}`);
    $("source").textContent = `Same records as GET ${data.usage_query}` + (data.budget_query ? ` and GET ${data.budget_query}` : "");
    view.replaceChildren(...VIEWS[name](data));
    view.dataset.loaded = name;
  } catch (e) {
    if (e.message !== "signed out") $("load-error").textContent = e.message;
  }
}

function summaryCards(s, prefix) {
  return el("div", { class: "cards" },
    card("Requests", s.requests, int, `${prefix}-requests`),
    card("Prompt tokens", s.prompt_tokens, int, `${prefix}-prompt-tokens`),
    card("Completion tokens", s.completion_tokens, int, `${prefix}-completion-tokens`),
    card("Cost", s.cost_usd, usd, `${prefix}-cost`));
}

function renderSpend(d) {
  const tiers = [...new Set(d.days.flatMap((x) => Object.keys(x.cost_by_tier)))].sort();
  const series = tiers.map((t) => ({ name: `tier ${t}`, color: TIER_COLORS[t] || C.PALETTE[6],
    values: d.days.map((x) => x.cost_by_tier[t] || 0) }));
  const b = d.baseline;
  const out = [summaryCards(d.summary, "spend")];
  out.push(el("div", { class: "cards" },
    card("Top-tier estimate", b ? b.cost_usd : null, usd, "spend-baseline"),
    card("Savings", b ? b.savings_usd : null, usd, "spend-savings"),
    card("Savings %", b ? b.savings_percent : null, pct, "spend-savings-percent"),
    card("Cache hits", d.cache.hits, int, "spend-cache-hits"),
    card("Cache savings", d.cache.saved_usd, usd, "spend-cache-saved")));
  out.push(el("div", { class: "grid" },
    panel("Cost per day and tier", d.days.length ? C.stackedBars("Cost per day and tier", d.days.map((x) => x.day), series, usd,
      b ? { name: `all at ${b.model} (tier ${b.tier})`, values: d.days.map((x) => x.baseline_usd) } : null) : empty("No requests in this filter")),
    panel("Cost per tier", d.tiers.length ? C.hBars("Cost per tier", d.tiers.map((t) => ({ label: `tier ${t.tier}`, values: [t.cost_usd] })), ["cost"], usd) : empty("No requests"),
      table([{ label: "tier" }, { label: "requests", num: true }, { label: "cost", num: true }],
        d.tiers.map((t) => [td(`tier ${t.tier}`), td(t.requests, int, `spend-tier-${t.tier}-requests`), td(t.cost_usd, usd, `spend-tier-${t.tier}-cost`)])))));
  out.push(panel("How savings are computed", el("p", { class: "method", "data-testid": "spend-method" },
    b ? b.method : "No priced model in the catalog: no top-tier estimate."),
  el("p", { class: "method" }, "Cache savings: the cost each cache hit recorded as saved (a hit costs $0).")));
  return out;
}

function renderBudgets(d) {
  if (!d.available) return [empty("This home keeps no budgets (no record store).")];
  const out = [el("p", { class: "method" }, `Soft limit at ${Math.round(d.soft_limit_fraction * 100)}% of each limit (dashed line): past it, requests are downgraded to a cheaper tier. Spent and reserved come from the budget counters (GET /v1/budget); the burn-down line from settled usage records.`)];
  const rows = d.scopes.map((s) => {
    const id = `budget-${s.scope}-${s.id}-${s.period}`;
    return [td(s.scope), td(String(s.id)), td(`${s.period} ${s.period_id}`), td(s.limit_usd, usd, `${id}-limit`),
      td(s.spent_usd, usd, `${id}-spent`), td(s.reserved_usd, usd, `${id}-reserved`), td(s.remaining_usd, usd, `${id}-remaining`),
      td(s.utilization_percentage, pct, `${id}-utilization`)];
  });
  out.push(panel("Budgets", d.scopes.length ? table([{ label: "scope" }, { label: "id" }, { label: "period" }, { label: "limit", num: true },
    { label: "spent", num: true }, { label: "reserved", num: true }, { label: "remaining", num: true }, { label: "used", num: true }], rows)
    : empty("No budget limits apply to this filter.")));
  const charts = d.scopes.filter((s) => s.scope !== "tier").map((s) => panel(`${s.scope} ${s.id} — ${s.period === "day" ? "daily" : "monthly"}: spent / reserved / limit`,
    C.hBars(`${s.scope} ${s.id} ${s.period}`, [{ label: "USD", values: [s.spent_usd, s.reserved_usd, s.limit_usd] }], ["spent", "reserved", "limit"], usd),
    s.burn_down ? C.lineChart(`burn-down ${s.scope} ${s.id} ${s.period}`, s.burn_down.map((p, i) => ({ x: i, y: p.remaining_usd })), usd,
      [{ y: s.limit_usd - s.soft_limit_usd, label: "soft limit", color: "#b45309" }], s.limit_usd) : empty("Burn-down: only the master key sees global spend over time.")));
  out.push(el("div", { class: "grid" }, ...charts));
  if (d.tier_allocations.length) {
    out.push(panel("Tier allocations (shares of the global monthly budget)",
      C.hBars("tier allocations", d.tier_allocations.map((t) => ({ label: `tier ${t.id}`, values: [t.spent_usd + t.reserved_usd, t.limit_usd] })), ["used", "allocation"], usd)));
  }
  return out;
}

function renderLatency(d) {
  const out = [summaryCards(d.summary, "latency"), el("div", { class: "cards" },
    card("Retries", d.retries, int, "latency-retries"), card("Fallbacks", d.fallbacks, int, "latency-fallbacks"),
    card("Errors", d.errors.reduce((a, e) => a + e.count, 0), int, "latency-errors"))];
  out.push(el("div", { class: "grid" },
    panel("Latency per model (p50 / p99)", d.models.length ? C.hBars("latency", d.models.map((m) => ({ label: m.model, values: [m.p50_ms, m.p99_ms] })), ["p50", "p99"], ms) : empty("No requests")),
    panel("Time to first token per model (streams)", d.models.some((m) => m.streams) ? C.hBars("ttft", d.models.filter((m) => m.streams).map((m) => ({ label: m.model, values: [m.ttft_p50_ms, m.ttft_p99_ms] })), ["p50", "p99"], ms) : empty("No streamed requests"))));
  out.push(panel("Per model", table([{ label: "model" }, { label: "requests", num: true }, { label: "p50", num: true }, { label: "p99", num: true },
    { label: "streams", num: true }, { label: "TTFT p50", num: true }, { label: "TTFT p99", num: true }],
  d.models.map((m) => [td(m.model), td(m.requests, int, `lat-${m.model}-requests`), td(m.p50_ms, ms, `lat-${m.model}-p50`), td(m.p99_ms, ms, `lat-${m.model}-p99`),
    td(m.streams, int, `lat-${m.model}-streams`), td(m.ttft_p50_ms, ms, `lat-${m.model}-ttft-p50`), td(m.ttft_p99_ms, ms, `lat-${m.model}-ttft-p99`)])),
  el("p", { class: "method" }, d.method)));
  out.push(el("div", { class: "grid" },
    panel("Errors by class", d.errors.length ? C.hBars("errors", d.errors.map((e) => ({ label: e.error, values: [e.count] })), ["requests"], int) : empty("No errors"),
      table([{ label: "error" }, { label: "count", num: true }], d.errors.map((e) => [td(e.error), td(e.count, int, `err-${e.error}`)]))),
    panel("Circuit breakers (this instance)", table([{ label: "deployment" }, { label: "state" }, { label: "failures", num: true }],
      d.circuits.map((c) => [td(c.deployment), el("td", { class: `state-${c.state}`, "data-testid": `circuit-${c.deployment}`, "data-value": JSON.stringify(c.state) }, c.state), td(c.failures, int)])))));
  return out;
}

function renderRouting(d) {
  const tiers = [...new Set(d.decisions.flatMap((x) => Object.keys(x.tiers)))].sort();
  const out = [summaryCards(d.summary, "routing")];
  out.push(panel("Decisions by task type and tier", d.decisions.length ? C.stackedBars("decisions", d.decisions.map((x) => x.task_type),
    tiers.map((t) => ({ name: `tier ${t}`, color: TIER_COLORS[t] || C.PALETTE[6], values: d.decisions.map((x) => x.tiers[t] || 0) })), int) : empty("No requests"),
  table([{ label: "task type" }, { label: "requests", num: true }, ...tiers.map((t) => ({ label: `tier ${t}`, num: true }))],
    d.decisions.map((x) => [td(x.task_type), td(x.requests, int, `route-${x.task_type}-requests`), ...tiers.map((t) => td(x.tiers[t] || 0, int))]))));
  out.push(panel("Cascade escalation per policy and step", d.cascades.length ? el("div", {}, ...d.cascades.map((c) => el("div", {},
    C.hBars(`cascade ${c.policy}`, c.steps.map((s) => ({ label: `${c.policy} step ${s.step}`, values: [s.requests] })), ["requests reaching the step"], int),
    table([{ label: "step" }, { label: "requests", num: true }, { label: "escalated to the next", num: true }],
      c.steps.map((s) => [td(`step ${s.step}`), td(s.requests, int, `cascade-${c.policy}-${s.step}-requests`),
        td(s.escalation_rate === null ? null : 100 * s.escalation_rate, pct, `cascade-${c.policy}-${s.step}-escalation`)]))))) : empty("No cascaded requests")));
  out.push(panel("Predicted quality vs feedback", d.quality.length ? C.lineChart("predicted vs feedback", d.quality.map((q, i) => ({ x: i, y: q.predicted - q.feedback })), (v) => v.toFixed(2))
    : empty("Appears when the learned router records predicted quality and clients send feedback (POST /v1/feedback).")));
  return out;
}

function renderEdge(d) {
  if (!d.available) return [empty("Not an edge agent: this view shows the device agent's local/offload share, queue and sync.")];
  const s = d.status;
  const out = [el("div", { class: "cards" },
    card("Answered locally", d.local, int, "edge-local"), card("Offloaded", d.offloaded, int, "edge-offloaded"),
    card("Local share", d.local_share === null ? null : 100 * d.local_share, pct, "edge-local-share"),
    card("Queued jobs", s.queue.queued, int, "edge-queued"), card("Unsynced usage", s.usage_outbox_pending, int, "edge-outbox"),
    card("Sync lag", s.sync_lag_s, (v) => (v === null ? "-" : v.toFixed(1) + " s"), "edge-sync-lag"),
    card("Cloud", s.cloud_up ? "reachable" : s.cloud_configured ? "unreachable" : "not configured", (v) => v, "edge-cloud"))];
  out.push(panel("Local vs offloaded", C.shareBar("local vs offloaded", [{ name: "local", value: d.local, color: C.PALETTE[1] }, { name: "offloaded", value: d.offloaded, color: C.PALETTE[0] }])));
  const h = d.history;
  out.push(el("div", { class: "grid" },
    panel("Queue depth over time", h.length ? C.lineChart("queue depth", h.map((x, i) => ({ x: i, y: x.queue.queued + x.queue.running })), int) : empty("No samples yet")),
    panel("Sync lag over time (s)", h.length ? C.lineChart("sync lag", h.map((x, i) => ({ x: i, y: x.sync_lag_s || 0 })), (v) => v.toFixed(1)) : empty("No samples yet")),
    panel("Cloud reachability over time", h.length ? C.stateStrip("cloud reachability", h.map((x) => !!x.cloud_up)) : empty("No samples yet"),
      el("p", { class: "method" }, `${h.length} samples, oldest first (green: reachable).`))));
  return out;
}

start();

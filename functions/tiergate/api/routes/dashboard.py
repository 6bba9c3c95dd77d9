"""``/dashboard``: the page, its assets, sign-in and the read-only data of each view.

Who sees what: the master key everything (tenant and key filters optional); a key with
the ``dashboard`` scope its own tenant only (the tenant filter is forced); any other key
cannot sign in. Figures come from ``limits.usage.query`` / ``usage.summarize`` and
``limits.budgets.report`` -- the functions behind ``/v1/usage`` and ``/v1/budget`` --
with the same filters, so both always agree. CSRF and cookie rules: see
:mod:`tiergate.dashboard.session`.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.responses import Response

from tiergate.api.body import read_json
from tiergate.api.deps import ServicesDep, int_param
from tiergate.api.responses import JSONResponse
from tiergate.dashboard import views
from tiergate.dashboard.session import COOKIE, CSRF_HEADER, Session, session_secret, sign, verify
from tiergate.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied
from tiergate.limits import budgets, usage
from tiergate.limits.admission import Principal
from tiergate.limits.virtual_keys import DASHBOARD_SCOPE, VirtualKey, has_scope
from tiergate.services import Services

router = APIRouter(include_in_schema=False)

#: The page may load only its own files and talk only to its own origin.
PAGE_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "cache-control": "no-store",
}
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}
RECORD_LIMIT = 10_000  # the most /v1/usage returns (its ``limit`` maximum)


def _static(name: str) -> bytes:
    files = resources.files("tiergate.dashboard") / "static"
    entry = files / name
    if "/" in name or name.startswith(".") or not entry.is_file():
        raise NotFound(f"No dashboard asset {name!r}")
    return entry.read_bytes()


@router.get("/dashboard")
async def page() -> Response:
    return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/dashboard/static/{name}")
async def asset(name: str) -> Response:
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in ASSET_TYPES:
        raise NotFound(f"No dashboard asset {name!r}")
    return Response(_static(name), media_type=ASSET_TYPES[suffix], headers=PAGE_HEADERS)


# --- sessions --------------------------------------------------------------------------


def _secret(request: Request) -> bytes:
    state = request.app.state
    if getattr(state, "dashboard_secret", None) is None:
        state.dashboard_secret = session_secret(request.app.state.services.settings)
    return state.dashboard_secret


def _same_origin(request: Request) -> None:
    """Writing routes: an Origin (browsers send it on POST) must be this gateway's own."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise PermissionDenied("Cross-origin dashboard request refused")
    if CSRF_HEADER not in request.headers:
        raise PermissionDenied(f"Dashboard requests must carry the {CSRF_HEADER} header")


def _secure(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


@router.post("/dashboard/session")
async def sign_in(request: Request, services: ServicesDep) -> JSONResponse:
    """Body ``{"key": "<master key or a dashboard-scope key>"}``; sets the session cookie."""
    _same_origin(request)
    body = await read_json(request, 4096)
    key = body.get("key")
    if not isinstance(key, str) or len(key) > 512:
        raise InvalidRequest("Send {\"key\": \"<API key>\"}", param="key")
    principal = await services.admission.authenticate(f"Bearer {key}" if key else None)
    if not has_scope(principal, DASHBOARD_SCOPE):
        raise PermissionDenied("This key may not sign in to the dashboard: it needs the 'dashboard' scope")
    ttl = services.settings.dashboard_session_ttl_s
    session = Session(principal.key_id, principal.tenant, principal.is_master, int(time.time()) + ttl)
    resp = JSONResponse(_who(session))
    resp.set_cookie(COOKIE, sign(session, _secret(request)), max_age=ttl, path="/", httponly=True,
                    secure=_secure(request), samesite="strict")
    return resp


@router.post("/dashboard/logout")
async def sign_out(request: Request) -> JSONResponse:
    _same_origin(request)
    resp = JSONResponse({"signed_in": False})
    resp.delete_cookie(COOKIE, path="/", httponly=True, secure=_secure(request), samesite="strict")
    return resp


async def _session(request: Request, services: Services) -> Session:
    """The signed-in session, re-checked against the key's current record."""
    session = verify(request.cookies.get(COOKIE), _secret(request), now=time.time())
    if session is None:
        raise AuthenticationFailed("Sign in to the dashboard")
    if not session.is_master:
        if services.virtual_keys is None:
            raise AuthenticationFailed("Sign in to the dashboard")
        try:
            key = await services.virtual_keys.get(session.key_id)
        except NotFound:
            raise AuthenticationFailed("The key of this session no longer exists") from None
        why = key.usable(time.time())
        if why is not None or DASHBOARD_SCOPE not in key.scopes:
            raise AuthenticationFailed(why or "The key of this session lost its 'dashboard' scope")
    return session


def _who(session: Session) -> dict[str, Any]:
    return {"signed_in": True, "key_id": session.key_id, "tenant": None if session.is_master else session.tenant,
            "is_master": session.is_master}


def _principal(session: Session, key: VirtualKey | None = None) -> Principal:
    return Principal(key_id=session.key_id, tenant=session.tenant, is_master=session.is_master,
                     metadata={"key": key} if key is not None else {})


# --- data ------------------------------------------------------------------------------


class Filter:
    """``period``, ``tenant``, ``model`` (and ``key_id``) as ``/v1/usage`` reads them, with
    a dashboard key's tenant forced."""

    def __init__(self, request: Request, session: Session) -> None:
        q = request.query_params
        self.period = q.get("period") or "month"
        self.since = usage.period_start(self.period, time.time())
        self.model = q.get("model") or None
        self.tier = int_param(q.get("tier"), "tier", lo=0, hi=4)
        self.key_id = q.get("key_id") or None
        self.tenant = q.get("tenant") or None
        if not session.is_master:
            if self.tenant and self.tenant != session.tenant:
                raise PermissionDenied("A dashboard key may read only its own tenant")
            self.tenant = session.tenant

    def usage_query(self) -> str:
        """The ``/v1/usage`` query that returns the same records."""
        parts = [f"period={self.period}", f"limit={RECORD_LIMIT}"]
        parts += [f"{k}={v}" for k, v in (("tenant", self.tenant), ("key_id", self.key_id), ("model", self.model),
                                          ("tier", self.tier)) if v is not None]
        return "/v1/usage?" + "&".join(parts)

    async def records(self, services: Services) -> list[dict[str, Any]]:
        if services.store is not None:
            return await usage.query(services.store, key_id=self.key_id, tenant=self.tenant, since=self.since,
                                     tier=self.tier, model=self.model, limit=RECORD_LIMIT)
        if services.usage_log is not None:
            return services.usage_log.query(key_id=self.key_id, tenant=self.tenant, since=self.since,
                                            tier=self.tier, model=self.model, limit=RECORD_LIMIT)
        return []


def _view(name: str, session: Session, f: Filter, data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"view": name, "viewer": _who(session), "usage_query": f.usage_query(),
                         "filter": {"period": f.period, "tenant": f.tenant, "model": f.model, "key_id": f.key_id},
                         **data}, headers={"cache-control": "no-store"})


@router.get("/dashboard/api/session")
async def whoami(request: Request, services: ServicesDep) -> JSONResponse:
    """200 either way (the page asks before it knows): ``signed_in`` says which."""
    try:
        session = await _session(request, services)
    except AuthenticationFailed:
        return JSONResponse({"signed_in": False}, headers={"cache-control": "no-store"})
    tenants = sorted({k.tenant for k in await services.virtual_keys.list()}) \
        if session.is_master and services.virtual_keys is not None else []
    return JSONResponse({**_who(session), "models": sorted(services.catalog.groups), "tenants": tenants,
                         "has_store": services.store is not None, "is_edge": services.edge is not None},
                        headers={"cache-control": "no-store"})


@router.get("/dashboard/api/spend")
async def spend(request: Request, services: ServicesDep) -> JSONResponse:
    session = await _session(request, services)
    f = Filter(request, session)
    return _view("spend", session, f, views.spend(await f.records(services), services.catalog))


@router.get("/dashboard/api/budgets")
async def budget_view(request: Request, services: ServicesDep) -> JSONResponse:
    session = await _session(request, services)
    f = Filter(request, session)
    cfg = services.catalog.budgets
    if services.store is None or services.virtual_keys is None:
        return _view("budgets", session, f, {"available": False, "scopes": [], "tier_allocations": [],
                                             "soft_limit_fraction": cfg.soft_limit_fraction})
    viewer_key = None if session.is_master else await services.virtual_keys.get(session.key_id)
    key, tenant = await budgets.subject(_principal(session, viewer_key), services.virtual_keys,
                                        tenant=f.tenant, key_id=f.key_id)
    rows = await budgets.report(services.store, cfg, key=key, tenant=tenant, now=time.time())
    # Burn-down lines from the month's records: everyone's for the master; a tenant viewer
    # sees lines only for its own scopes (never others' spend).
    recs = await usage.query(services.store, tenant=None if session.is_master else tenant,
                             since=usage.period_start("month", time.time()), limit=100_000)
    data = views.budgets(rows, recs, soft_fraction=cfg.soft_limit_fraction)
    if not session.is_master:
        for row in data["scopes"]:
            if row["scope"] in ("global", "tier"):
                row["burn_down"] = None
    return _view("budgets", session, f, {"available": True, "budget_query": _budget_query(key, tenant), **data})


def _budget_query(key: VirtualKey | None, tenant: str | None) -> str:
    if key is not None:
        return f"/v1/budget?key_id={key.key_id}"
    return f"/v1/budget?tenant={tenant}" if tenant else "/v1/budget"


@router.get("/dashboard/api/latency")
async def latency_view(request: Request, services: ServicesDep) -> JSONResponse:
    session = await _session(request, services)
    f = Filter(request, session)
    return _view("latency", session, f, views.latency(await f.records(services), services.circuits.snapshot(),
                                                      services.catalog))


@router.get("/dashboard/api/routing")
async def routing_view(request: Request, services: ServicesDep) -> JSONResponse:
    session = await _session(request, services)
    f = Filter(request, session)
    return _view("routing", session, f, views.routing(await f.records(services)))


@router.get("/dashboard/api/edge")
async def edge_view(request: Request, services: ServicesDep) -> JSONResponse:
    session = await _session(request, services)
    f = Filter(request, session)
    status = services.edge.edge_status() if services.edge is not None else None
    history = services.edge.edge_history() if services.edge is not None else []
    return _view("edge", session, f, views.edge(await f.records(services), services.catalog, status, history))

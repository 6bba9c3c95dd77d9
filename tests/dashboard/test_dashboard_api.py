"""The dashboard's HTTP contract: sign-in and its cookie, CSRF refusals, who sees what, and
figures equal to ``/v1/usage`` and ``/v1/budget`` for the same filter (real gateway under
uvicorn, SQLite store, traffic sent through the ``openai`` SDK)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.traffic import MASTER, Served

HDR = {"x-tiergate-dashboard": "1"}


def signed_in(s: Served, key: str, **headers: str) -> httpx.Client:
    c = httpx.Client(base_url=s.url, timeout=30)
    r = c.post("/dashboard/session", json={"key": key}, headers={**HDR, **headers})
    assert r.status_code == 200, r.text
    return c


def test_page_and_assets_are_served_from_the_package(served):
    page = httpx.get(served.url + "/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "https://" not in page.text  # no CDN
    for name, kind in (("app.js", "text/javascript"), ("charts.js", "text/javascript"), ("style.css", "text/css")):
        r = httpx.get(f"{served.url}/dashboard/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), name
    assert httpx.get(served.url + "/dashboard/static/..%2Fsession.py").status_code == 404
    assert httpx.get(served.url + "/dashboard/static/views.py").status_code == 404


def test_session_cookie_flags_and_sign_out(served):
    c = httpx.Client(base_url=served.url)
    r = c.post("/dashboard/session", json={"key": MASTER}, headers=HDR)
    assert r.status_code == 200 and r.json()["is_master"] is True
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie  # plain HTTP here
    assert MASTER.lower() not in cookie
    assert c.get("/dashboard/api/spend").status_code == 200
    assert c.post("/dashboard/logout", headers=HDR).status_code == 200
    assert c.get("/dashboard/api/spend").status_code == 401
    # Behind TLS (API Gateway sets X-Forwarded-Proto) the cookie is Secure.
    tls = httpx.post(served.url + "/dashboard/session", json={"key": MASTER},
                     headers={**HDR, "x-forwarded-proto": "https"})
    assert "secure" in tls.headers["set-cookie"].lower()


def test_who_may_sign_in(served):
    def sign_in(key, **headers):
        return httpx.post(served.url + "/dashboard/session", json={"key": key}, headers={**HDR, **headers})

    assert sign_in(served.keys["acme-dash"][1]).json()["tenant"] == "acme"
    api_only = sign_in(served.keys["acme"][1])
    assert api_only.status_code == 403 and "dashboard" in api_only.json()["error"]["message"]
    assert sign_in("sk-tg-not-a-key").status_code == 401
    assert sign_in("").status_code == 401
    # CSRF: no custom header, or another site's Origin, is refused before the key is looked at.
    assert httpx.post(served.url + "/dashboard/session", json={"key": MASTER}).status_code == 403
    assert sign_in(MASTER, origin="https://evil.example").status_code == 403
    # A forged or tampered cookie is no session.
    assert httpx.get(served.url + "/dashboard/api/spend", cookies={"tiergate_session": "e30.AAAA"}).status_code == 401
    assert httpx.get(served.url + "/dashboard/api/session").json() == {"signed_in": False}


def test_dashboard_key_cannot_call_models(served):
    dash = served.client("acme-dash")
    with pytest.raises(openai.PermissionDeniedError, match="api"):
        dash.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("flt", ["period=month", "period=day", "period=all", "period=month&tenant=acme",
                                 "period=month&tenant=beta", "period=month&model=fast", "period=all&model=premium"])
def test_master_figures_equal_v1_usage(served, flt):
    dash = signed_in(served, MASTER)
    for view in ("spend", "latency", "routing"):
        got = dash.get(f"/dashboard/api/{view}?{flt}").json()
        want = served.api(MASTER, got["usage_query"])
        assert got["summary"] == want["summary"], (view, flt)
        assert got["usage_query"].startswith("/v1/usage?")
    spend = dash.get(f"/dashboard/api/spend?{flt}").json()
    recs = served.api(MASTER, spend["usage_query"])["data"]
    assert sum(t["requests"] for t in spend["tiers"]) == len(recs)
    assert sum(d["cost_usd"] for d in spend["days"]) == pytest.approx(sum(r["cost_usd"] for r in recs), abs=1e-9)


def test_known_traffic_shows_up(served):
    dash = signed_in(served, MASTER)
    spend = dash.get("/dashboard/api/spend?period=all").json()
    assert spend["summary"]["requests"] >= 14
    b = spend["baseline"]
    assert b["model"] == "premium" and b["tier"] == 3
    assert b["savings_usd"] == pytest.approx(b["cost_usd"] - spend["summary"]["cost_usd"], abs=1e-9)
    assert b["savings_usd"] > 0 and "premium" in b["method"]
    lat = dash.get("/dashboard/api/latency?period=all").json()
    by_model = {m["model"]: m for m in lat["models"]}
    assert by_model["fast"]["streams"] == 1 and by_model["fast"]["ttft_p50_ms"] > 0
    assert by_model["premium"]["streams"] == 1
    assert lat["retries"] >= 1  # balanced was retried once
    assert any(e["error"] == "upstream_server_error" for e in lat["errors"])
    assert {c["deployment"] for c in lat["circuits"]} >= {"small", "fast", "broken"}
    routing = dash.get("/dashboard/api/routing?period=all").json()
    assert any(d["task_type"] == "coding" for d in routing["decisions"])
    cascade = {c["policy"]: c for c in routing["cascades"]}["default"]
    assert cascade["steps"][0]["requests"] == 1 and cascade["steps"][0]["escalation_rate"] == 1.0


def test_tenant_key_sees_only_its_tenant(served):
    dash = signed_in(served, served.keys["acme-dash"][1])
    spend = dash.get("/dashboard/api/spend?period=all").json()
    assert spend["filter"]["tenant"] == "acme" and "tenant=acme" in spend["usage_query"]
    # The same figures /v1/usage gives the master for tenant acme, and the dashboard key itself.
    assert spend["summary"] == served.api(MASTER, spend["usage_query"])["summary"]
    assert spend["summary"] == served.api(served.keys["acme-dash"][1], spend["usage_query"])["summary"]
    assert spend["summary"]["requests"] > 0
    assert dash.get("/dashboard/api/spend?tenant=beta").status_code == 403
    assert served.api(served.keys["acme-dash"][1], "/v1/usage?period=all")["summary"] == spend["summary"]
    r = httpx.get(served.url + "/v1/usage?tenant=beta",
                  headers={"authorization": f"Bearer {served.keys['acme-dash'][1]}"})
    assert r.status_code == 403


def test_budgets_equal_v1_budget(served):
    master = signed_in(served, MASTER)
    for flt, secret in (("", MASTER), ("tenant=acme", MASTER), (f"key_id={served.keys['acme'][0]}", MASTER)):
        got = master.get(f"/dashboard/api/budgets?{flt}").json()
        want = served.api(secret, got["budget_query"])
        strip = [{k: v for k, v in row.items() if k not in ("soft_limit_usd", "burn_down")} for row in got["scopes"]]
        assert strip == want["scopes"], flt
        assert got["soft_limit_fraction"] == want["soft_limit_fraction"] == 0.8
        for row in got["scopes"]:
            assert row["soft_limit_usd"] == pytest.approx(0.8 * row["limit_usd"])
            assert row["burn_down"][0]["remaining_usd"] == row["limit_usd"]
    scopes = {(r["scope"], r["period"]) for r in master.get("/dashboard/api/budgets?tenant=acme").json()["scopes"]}
    assert {("tenant", "day"), ("tenant", "month"), ("global", "month"), ("tier", "month")} <= scopes
    dash = signed_in(served, served.keys["acme-dash"][1])
    got = dash.get("/dashboard/api/budgets").json()
    assert got["budget_query"] == "/v1/budget?tenant=acme"
    want = served.api(served.keys["acme-dash"][1], "/v1/budget")
    assert [row["spent_usd"] for row in got["scopes"]] == [row["spent_usd"] for row in want["scopes"]]
    assert all(row["burn_down"] is None for row in got["scopes"] if row["scope"] in ("global", "tier"))
    assert dash.get(f"/dashboard/api/budgets?key_id={served.keys['beta'][0]}").status_code == 403


def test_revoked_or_descoped_key_loses_its_session(served):
    with served.admin() as admin:
        r = admin.post("/v1/keys", json={"tenant": "acme", "scopes": ["dashboard"]})
        key_id, secret = r.json()["id"], r.json()["key"]
        dash = signed_in(served, secret)
        assert dash.get("/dashboard/api/spend").status_code == 200
        assert admin.patch(f"/v1/keys/{key_id}", json={"scopes": ["api"]}).status_code == 200
        assert dash.get("/dashboard/api/spend").status_code == 401
        assert admin.patch(f"/v1/keys/{key_id}", json={"scopes": ["dashboard"]}).status_code == 200
        assert dash.get("/dashboard/api/spend").status_code == 200
        assert admin.delete(f"/v1/keys/{key_id}").status_code == 200
        assert dash.get("/dashboard/api/spend").status_code == 401


def test_bad_filters_are_400(served):
    dash = signed_in(served, MASTER)
    r = dash.get("/dashboard/api/spend?period=week")
    assert r.status_code == 400 and r.json()["error"]["param"] == "period"
    assert dash.get("/dashboard/api/spend?tier=9").status_code == 400

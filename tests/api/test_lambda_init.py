"""The Lambda entry points' init (``tiergate.handlers``), in a fresh interpreter each, as a
cold start runs it: garbage collector off during init and back on after, with the startup
heap frozen; pydantic's validators for init-time models deferred to first use (and the
default restored), FastAPI's module-level ``model_rebuild()`` calls included; ``pydantic.v1``
not imported by FastAPI's route checks; pydantic plugins not looked up. The deferred models
still work when a request needs them: ``/openapi.json`` is the same document an app built
without this init serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.api.test_lambda import CATALOG

PROBE = r"""
import gc, json, sys
import tiergate.handlers.api as h
from fastapi._compat import shared as fastapi_shared
from fastapi.openapi import models as openapi_models
from pydantic import BaseModel
from pydantic._internal._config import config_defaults
import os
from pydantic import TypeAdapter
from tiergate.api.routes import keys as keys_routes
def query_param():  # GET /v1/keys?tenant=
    route = next(r for r in keys_routes.router.routes if r.path == "/v1/keys" and "GET" in r.methods)
    return route.dependant.query_params[0]._type_adapter
state = {
    "gc_enabled": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "openapi_model_built_at_init": openapi_models.OpenAPI.__pydantic_complete__,
    "rebuilt_at_init": [m.__name__ for m in (openapi_models.Schema, openapi_models.Operation,
                                             openapi_models.Encoding) if m.__pydantic_complete__],
    "pydantic_v1_imported": "pydantic.v1" in sys.modules,
    "query_adapter_built_at_init": query_param().pydantic_complete,
    "model_rebuild_restored": BaseModel.__dict__["model_rebuild"].__func__.__module__ == "pydantic.main",
    "v1_check_restored": fastapi_shared.is_pydantic_v1_model_class.__module__ == "fastapi._compat.shared",
    "adapter_defer_restored": TypeAdapter(int)._defer_build is False,
    "defer_default_after_init": config_defaults["defer_build"],
    "plugins_env": os.environ.get("PYDANTIC_DISABLE_PLUGINS"),
}
ctx = Ctx()
chat = h.handler(rest_v1("POST", "/v1/chat/completions", CHAT, AUTH), ctx)
spec = h.handler(rest_v1("GET", "/openapi.json", None, {}), ctx)
master = {"authorization": "Bearer sk-lambda", "content-type": "application/json"}
made = h.handler(rest_v1("POST", "/v1/keys", {"tenant": "acme"}, master), ctx)
listed = {}
for tenant in ("acme", "other"):  # the deferred query parameter, parsed on first use
    ev = rest_v1("GET", "/v1/keys", None, master)
    ev.update(queryStringParameters={"tenant": tenant}, multiValueQueryStringParameters={"tenant": [tenant]})
    out = h.handler(ev, ctx)
    listed[tenant] = [out["statusCode"], len(json.loads(out["body"])["data"])]
state["keys"] = [made["statusCode"], listed]
state["chat_status"] = chat["statusCode"]
state["openapi_status"] = spec["statusCode"]
state["openapi"] = json.loads(spec["body"])
state["openapi_model_built_after_use"] = openapi_models.OpenAPI.__pydantic_complete__
print(json.dumps(state))
"""

#: The same app built without the Lambda init (no deferral): the reference document.
PLAIN = r"""
import json, sys
from tiergate.compose import build_cloud_app
assert "tiergate.handlers" not in sys.modules
print(json.dumps(build_cloud_app().openapi()))
"""


@pytest.fixture
def lambda_env(sim, tmp_path) -> dict[str, str]:
    cfg = tmp_path / "catalog.yaml"
    cfg.write_text(CATALOG % sim.openai_base)
    env = {**os.environ, "TIERGATE_CONFIG": str(cfg), "TIERGATE_STORE": "memory",
           "TIERGATE_MASTER_KEY": "sk-lambda", "TIERGATE_DATA_DIR": str(tmp_path / "data")}
    env.pop("PYDANTIC_DISABLE_PLUGINS", None)
    return env


def test_cold_init_defers_and_restores(lambda_env):
    code = ("from tests.api.test_lambda import AUTH, CHAT, Ctx, rest_v1\n" + PROBE)
    out = subprocess.run([sys.executable, "-c", code], env=lambda_env, capture_output=True, text=True, timeout=120,
                         cwd=os.getcwd())
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["gc_enabled"] is True and state["frozen"] > 10_000  # the startup heap is frozen
    assert state["openapi_model_built_at_init"] is False  # deferred: no request needed it yet
    assert state["rebuilt_at_init"] == []  # FastAPI's module-level model_rebuild() deferred too
    assert state["pydantic_v1_imported"] is False
    assert state["model_rebuild_restored"] is True and state["v1_check_restored"] is True
    assert state["query_adapter_built_at_init"] is False  # FastAPI's parameter adapters deferred too
    assert state["adapter_defer_restored"] is True
    assert state["keys"] == [201, {"acme": [200, 1], "other": [200, 0]}]
    assert state["defer_default_after_init"] is False  # models defined after init build as usual
    assert state["plugins_env"] == "__all__"
    assert state["chat_status"] == 200
    assert state["openapi_status"] == 200 and "/v1/models" in state["openapi"]["paths"]
    assert state["openapi_model_built_after_use"] is True
    plain = subprocess.run([sys.executable, "-c", PLAIN], env=lambda_env, capture_output=True, text=True,
                           timeout=120)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert state["openapi"] == json.loads(plain.stdout.strip().splitlines()[-1])


def test_cascade_entry_point_turns_the_collector_back_on(lambda_env):
    """The cascade task module builds its services on the first invocation, but its import
    must still leave the collector on."""
    code = "import gc, tiergate.handlers.cascade as c; print(gc.isenabled(), gc.get_freeze_count() > 0)"
    out = subprocess.run([sys.executable, "-c", code], env=lambda_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "True"]

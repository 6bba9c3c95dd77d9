"""The Lambda entry points' init (``tiergate.handlers``), in a fresh interpreter each, as a
cold start runs it: garbage collector off during init and back on after, with the startup
heap frozen; pydantic's validators for init-time models deferred to first use (and the
default restored); pydantic plugins not looked up. The deferred models still work when a
request needs them (``/openapi.json``)."""

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
from fastapi.openapi import models as openapi_models
from pydantic._internal._config import config_defaults
import os
state = {
    "gc_enabled": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "openapi_model_built_at_init": openapi_models.OpenAPI.__pydantic_complete__,
    "defer_default_after_init": config_defaults["defer_build"],
    "plugins_env": os.environ.get("PYDANTIC_DISABLE_PLUGINS"),
}
ctx = Ctx()
chat = h.handler(rest_v1("POST", "/v1/chat/completions", CHAT, AUTH), ctx)
spec = h.handler(rest_v1("GET", "/openapi.json", None, {}), ctx)
state["chat_status"] = chat["statusCode"]
state["openapi_status"] = spec["statusCode"]
state["openapi_paths"] = sorted(json.loads(spec["body"])["paths"])
state["openapi_model_built_after_use"] = openapi_models.OpenAPI.__pydantic_complete__
print(json.dumps(state))
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
    assert state["defer_default_after_init"] is False  # models defined after init build as usual
    assert state["plugins_env"] == "__all__"
    assert state["chat_status"] == 200
    assert state["openapi_status"] == 200 and "/v1/models" in state["openapi_paths"]
    assert state["openapi_model_built_after_use"] is True


def test_cascade_entry_point_turns_the_collector_back_on(lambda_env):
    """The cascade task module builds its services on the first invocation, but its import
    must still leave the collector on."""
    code = "import gc, tiergate.handlers.cascade as c; print(gc.isenabled(), gc.get_freeze_count() > 0)"
    out = subprocess.run([sys.executable, "-c", code], env=lambda_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "True"]

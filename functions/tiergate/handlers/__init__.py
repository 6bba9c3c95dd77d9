"""The Lambda entry points: :mod:`~tiergate.handlers.api` (Mangum), :mod:`~tiergate.handlers.asgi`
(uvicorn behind the Lambda Web Adapter) and :mod:`~tiergate.handlers.cascade` (Step Functions tasks).

Importing any of them runs this package first, and its init makes the cold start cheaper
(``bench/cold_start`` measures it); each entry point calls :func:`ready` once its module
has been initialized:

* the cyclic garbage collector is off during init: imports and building the app allocate a
  few hundred thousand long-lived objects and almost no garbage, and each full collection
  on the way walked all of them again (measured: ~75 ms less CPU per cold start, min of 7).
  :func:`ready` then freezes the startup heap into the permanent generation (later
  collections never walk it, and a SnapStart snapshot holds a settled heap) and turns the
  collector back on. No ``gc.collect()`` first: it would cost a full walk for little garbage;
* models defined during init build their pydantic validators on first use, not at class
  creation: most of them are never used by a request (FastAPI's OpenAPI models serve only
  ``/openapi.json``; measured: ~95 ms less CPU, min of 7). This sets the default of pydantic's documented ``defer_build``
  option through ``pydantic._internal._config.config_defaults`` (pydantic 2.13, pinned;
  ``tests/api/test_lambda_init.py`` checks that the deferral still takes effect) and
  :func:`ready` restores it, so models defined later (a lazily imported LiteLLM) behave as
  everywhere else;
* pydantic plugins are not looked up (``PYDANTIC_DISABLE_PLUGINS``; the lookup scans the
  entry points of every installed distribution and we use none).
"""

from __future__ import annotations

import gc
import os

from pydantic._internal import _config as _pydantic_config

_DEFER_DEFAULT = _pydantic_config.config_defaults.get("defer_build", False)


def _begin() -> None:
    gc.disable()
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _pydantic_config.config_defaults["defer_build"] = True


def ready() -> None:
    """End of an entry point's init: restore pydantic's default, freeze the startup heap,
    turn the garbage collector back on. Idempotent."""
    _pydantic_config.config_defaults["defer_build"] = _DEFER_DEFAULT
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


_begin()

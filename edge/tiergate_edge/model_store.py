"""The models on this device: a small JSON manifest under ``<data dir>/models``.

``tiergate models add`` records a GGUF here under a name (a file it downloaded into
the models dir, a package's GGUF, or a path left where it is), with its sha256 and
optional per-model context size and threads; a catalog's llama-cpp ``model:`` (or
``tiergate edge --model``) may then name it. The manifest is replaced atomically
(write a temporary file, then rename), so a crash never leaves it half written.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MANIFEST = "models.json"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    path: Path
    source: str
    sha256: str | None = None
    size: int | None = None
    #: Owned files (downloaded into the models dir) are deleted by ``remove``; others are left alone.
    owned: bool = False
    n_ctx: int | None = None
    n_threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelEntry:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["path"] = Path(known["path"])
        return cls(**known)


class ModelStore:
    def __init__(self, models_dir: Path) -> None:
        self.dir = Path(models_dir)
        self.manifest = self.dir / MANIFEST

    def entries(self) -> dict[str, ModelEntry]:
        try:
            raw = json.loads(self.manifest.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.manifest} is unreadable ({e}); fix or delete it") from None
        return {name: ModelEntry.from_json(d) for name, d in (raw.get("models") or {}).items()}

    def get(self, name: str) -> ModelEntry | None:
        if not self.manifest.exists():  # the common case: nothing added; no parsing
            return None
        return self.entries().get(name)

    def put(self, entry: ModelEntry) -> None:
        models = self.entries()
        models[entry.name] = entry
        self._write(models)

    def remove(self, name: str) -> ModelEntry | None:
        models = self.entries()
        entry = models.pop(name, None)
        if entry is not None:
            self._write(models)
        return entry

    def _write(self, models: dict[str, ModelEntry]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"models": {n: e.to_json() for n, e in sorted(models.items())}}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".models-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.manifest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

"""The router artifact on disk: a versioned manifest plus the weights, loadable with the
standard library alone (``json``, ``hashlib``) -- no training dependency at serving time.

Layout of an artifact directory::

    manifest.json   format/version, model names, feature spec, training data hash,
                    metrics, calibration curves, created-at, file hashes
    router.json     the router: vocabulary, idf, one logistic output per model
    scorer.json     the answer scorer (only when the training data had answers)

:func:`load` checks everything a request would otherwise trip over -- a missing or
unreadable file, bad JSON, a hash that does not match (a half-copied artifact), an
unknown format or feature version -- and raises :class:`ArtifactError` saying which.
:meth:`Artifact.unknown_models` lets startup and ``tiergate config check`` refuse an
artifact naming models the catalog does not have.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiergate.config.catalog import CatalogError
from tiergate.routing.learned.features import (
    FEATURE_VERSION,
    answer_features,
    request_features,
    split_messages,
)
from tiergate.routing.learned.model import GAIN, Curve, LinearModel, relative_quality

FORMAT = "tiergate-router"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROUTER_FILE = "router.json"
SCORER_FILE = "scorer.json"
#: The issue's size budget for an artifact.
MAX_BYTES = 20 * 1024 * 1024


class ArtifactError(CatalogError):
    """The artifact cannot be used; the message says what is wrong and where. A catalog
    error: ``tiergate serve`` and ``config check`` report it as they report a bad catalog."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict[str, Any]
    router: LinearModel
    scorer: LinearModel | None
    router_curve: Curve
    scorer_curve: Curve | None
    #: Mean answer tokens per model in the training data (serving's cost estimate).
    output_tokens: Mapping[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.manifest.get("id", "?"))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.manifest["models"])

    @property
    def reference(self) -> str:
        """The model with the best average quality in the training data ("always-best")."""
        return str(self.manifest["reference_model"])

    @property
    def default_target(self) -> float:
        return float(self.manifest.get("quality_target", 0.95))

    def unknown_models(self, names: Iterable[str]) -> list[str]:
        known = set(names)
        return [m for m in self.models if m not in known]

    # --- predictions ------------------------------------------------------------------

    def predict(self, messages: Sequence[Mapping[str, Any]], body: Mapping[str, Any] | None = None,
                models: Iterable[str] | None = None) -> dict[str, float]:
        """Predicted quality in [0, 1] per model (all the artifact knows, or ``models``)."""
        pred = self.router.predict(request_features(messages, body))
        if self.manifest.get("router_form") == "relative":
            ref = self.reference
            q = pred[ref]
            pred = {m: q if m == ref else relative_quality(q, pred[GAIN + m]) for m in self.models}
        if models is None:
            return pred
        wanted = set(models)
        return {m: q for m, q in pred.items() if m in wanted}

    def margin(self, target: float) -> float | None:
        """The calibrated margin for a quality target (None: the target is above what the
        training data reached; the caller takes the reference model)."""
        return self.router_curve.value(target)

    def score(self, messages: Sequence[Mapping[str, Any]], answer: str, model: str | None,
              body: Mapping[str, Any] | None = None) -> float | None:
        """The scorer's predicted quality of ``answer`` (None without a scorer)."""
        if self.scorer is None:
            return None
        question = split_messages(messages)[0]
        feats = answer_features(request_features(messages, body), question, answer, model)
        return next(iter(self.scorer.predict(feats).values()))

    def threshold(self, target: float) -> float | None:
        """The calibrated accept threshold for a cascade at ``target`` (None: no scorer, or
        the target is above what the training data reached: never accept early)."""
        return self.scorer_curve.value(target) if self.scorer_curve is not None else None


# --- save / load ----------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_payload(vocab: Sequence[str], idf: Sequence[float], outputs: Mapping[str, tuple[float, Sequence[float]]]
                  ) -> dict[str, Any]:
    return {"vocab": list(vocab), "idf": [round(float(x), 5) for x in idf],
            "outputs": {m: {"bias": round(float(b), 6), "weights": [round(float(x), 5) for x in w]}
                        for m, (b, w) in outputs.items()}}


def save(directory: Path, manifest: dict[str, Any], router: dict[str, Any], scorer: dict[str, Any] | None) -> Path:
    """Write an artifact; the manifest is written last (atomically), so a reader that
    watches it never sees a manifest whose files are not all in place."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    for name, payload in ((ROUTER_FILE, router), (SCORER_FILE, scorer)):
        if payload is None:
            continue
        p = directory / name
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, separators=(",", ":")))
        os.replace(tmp, p)
        files[name] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
    man = {"format": FORMAT, "format_version": FORMAT_VERSION, "feature_version": FEATURE_VERSION,
           **manifest, "files": files}
    man["id"] = hashlib.sha256(json.dumps({k: v for k, v in man.items() if k != "id"}, sort_keys=True)
                               .encode()).hexdigest()[:12]
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(man, indent=1, sort_keys=True))
    os.replace(tmp, directory / MANIFEST)
    return directory


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"router artifact {path.parent}: {what} {path.name} is missing") from None
    except OSError as e:
        raise ArtifactError(f"router artifact {path.parent}: cannot read {path.name}: {e.strerror}") from None
    except ValueError as e:
        raise ArtifactError(f"router artifact {path.parent}: {path.name} is not valid JSON ({e})") from None


def _linear(payload: Any, where: str) -> LinearModel:
    try:
        outputs = {m: (float(o["bias"]), o["weights"]) for m, o in payload["outputs"].items()}
        return LinearModel(payload["vocab"], payload["idf"], outputs)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"router artifact: {where} is malformed ({type(e).__name__}: {e})") from None


def _curve(points: Any, where: str) -> Curve:
    try:
        pts = tuple(sorted((float(t), float(v)) for t, v in points))
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"router artifact: calibration {where} is malformed ({e})") from None
    if not pts:
        raise ArtifactError(f"router artifact: calibration {where} is empty")
    return Curve(pts)


def load(directory: str | os.PathLike[str]) -> Artifact:
    """Load and check an artifact directory; raises :class:`ArtifactError`."""
    d = Path(directory)
    if not d.is_dir():
        raise ArtifactError(f"router artifact {d}: no such directory")
    man = _read_json(d / MANIFEST, "the manifest")
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise ArtifactError(f"router artifact {d}: {MANIFEST} is not a tiergate router manifest")
    if man.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"router artifact {d}: format version {man.get('format_version')!r} is not supported "
                            f"(this gateway reads version {FORMAT_VERSION}); retrain with this version")
    if man.get("feature_version") != FEATURE_VERSION:
        raise ArtifactError(f"router artifact {d}: trained on feature version {man.get('feature_version')!r}, "
                            f"this gateway computes version {FEATURE_VERSION}; retrain it")
    files = man.get("files") or {}
    total = 0
    for name, meta in files.items():
        p = d / name
        if not p.is_file():
            raise ArtifactError(f"router artifact {d}: {name} is missing")
        total += p.stat().st_size
        if _sha256(p) != meta.get("sha256"):
            raise ArtifactError(f"router artifact {d}: {name} does not match its hash in the manifest "
                                "(corrupt or partly copied)")
    if total > MAX_BYTES:
        raise ArtifactError(f"router artifact {d}: {total} bytes is over the {MAX_BYTES}-byte budget")
    if ROUTER_FILE not in files:
        raise ArtifactError(f"router artifact {d}: the manifest lists no {ROUTER_FILE}")
    models = man.get("models")
    if not isinstance(models, list) or len(models) < 2 or man.get("reference_model") not in models:
        raise ArtifactError(f"router artifact {d}: the manifest needs 'models' (two or more) and a "
                            "'reference_model' among them")
    router = _linear(_read_json(d / ROUTER_FILE, "the router"), ROUTER_FILE)
    expected = set(models)
    if man.get("router_form") == "relative":
        expected = {man["reference_model"], *(GAIN + m for m in models if m != man["reference_model"])}
    if set(router.names) != expected:
        raise ArtifactError(f"router artifact {d}: {ROUTER_FILE} predicts {sorted(router.names)}, "
                            f"the manifest names {sorted(models)}")
    scorer = _linear(_read_json(d / SCORER_FILE, "the scorer"), SCORER_FILE) if SCORER_FILE in files else None
    cal = man.get("calibration") or {}
    return Artifact(path=d, manifest=man, router=router, scorer=scorer,
                    router_curve=_curve(cal.get("router"), "router"),
                    scorer_curve=_curve(cal["scorer"], "scorer") if scorer is not None and cal.get("scorer") else None,
                    output_tokens={str(k): float(v) for k, v in (man.get("output_tokens") or {}).items()})


def manifest_mtime(directory: str | os.PathLike[str]) -> float | None:
    """The manifest's modification time (hot reload watches it), or None."""
    try:
        return (Path(directory) / MANIFEST).stat().st_mtime_ns / 1e9
    except OSError:
        return None

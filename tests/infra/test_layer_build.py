"""The real layer build (cached under layers/build/ by requirements hash): contents, bytecode
and the unzipped size budget for function + layer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.infra.conftest import ROOT, load_layer_build

#: Function asset + dependencies layer, unzipped. Lambda's hard limit is 250 MB for the
#: function and all its layers; ours stays at 150 MB so that the issues still to come (the
#: learned router, more providers) fit with room to spare. layers/README.md keeps the
#: measured breakdown and what each cut saved.
BUDGET_BYTES = 150 * 1000 * 1000


def _function_asset_bytes() -> int:
    """The built function asset (sources + cpython-312 bytecode), as CDK stages it."""
    asset = load_layer_build().function_asset_dir()
    return sum(p.stat().st_size for p in asset.rglob("*") if p.is_file())


def size_report(manifest: dict, function: int, *, top: int = 25) -> str:
    """The per-package breakdown (``du`` of each top-level entry of the layer) and the total."""
    layer = manifest["unzipped_bytes"]
    packages = manifest["packages"]
    lines = [f"layer {layer / 1e6:.1f} MB + function {function / 1e6:.2f} MB = {(layer + function) / 1e6:.1f} MB "
             f"unzipped (budget {BUDGET_BYTES / 1e6:.0f} MB, headroom {(BUDGET_BYTES - layer - function) / 1e6:.1f} MB)",
             f"  sources (.py) {manifest['source_bytes'] / 1e6:.1f} MB, cpython-312 bytecode "
             f"{manifest['bytecode_bytes'] / 1e6:.1f} MB"]
    for name, size in list(packages.items())[:top]:
        lines.append(f"  {size / 1e6:7.2f} MB  {size / layer:6.1%}  {name}")
    rest = sum(list(packages.values())[top:])
    lines.append(f"  {rest / 1e6:7.2f} MB  {rest / layer:6.1%}  ({len(packages) - top} more entries)")
    return "\n".join(lines)


def test_layer_plus_function_fit_the_size_budget(built_layer):
    manifest = built_layer.manifest
    layer = manifest["unzipped_bytes"]
    function = _function_asset_bytes()
    print("\n" + size_report(manifest, function))
    on_disk = sum(p.stat().st_size for p in built_layer.site.rglob("*") if p.is_file())
    assert on_disk <= layer  # the manifest's figure covers the whole layer tree
    assert sum(manifest["packages"].values()) == on_disk  # the breakdown accounts for every byte
    assert layer + function < BUDGET_BYTES


def test_layer_never_ships_forbidden_packages(built_layer):
    site = built_layer.site
    for name in ("llama_cpp", "torch", "pytest", "_pytest", "boto3", "botocore", "moto", "hf_xet",
                 "tokenizers", "huggingface_hub", "fsspec"):
        assert not (site / name).exists(), name
        assert not list(site.glob(f"{name}-*.dist-info")), name
    assert not (site / "litellm" / "rust_bridge" / "_native.abi3.so").exists()
    assert (site / "litellm" / "rust_bridge" / "loader.py").exists()  # the Python side that tolerates its absence
    assert not list(site.glob("pytest*")) and not list(site.glob("torch*")) and not list(site.glob("llama_cpp*"))
    proxy = site / "litellm" / "proxy"
    assert not (proxy / "proxy_server.py").exists()
    proxy_bytes = sum(p.stat().st_size for p in proxy.rglob("*") if p.is_file())
    assert proxy_bytes < 2_000_000, proxy_bytes  # only the few modules `import litellm` needs
    assert not [p for p in site.rglob("tests") if p.is_dir()]
    assert (site / "litellm").is_dir() and (site / "mangum").is_dir() and (site / "aws_lambda_powertools").is_dir()
    assert (site / "litellm" / "model_prices_and_context_window_backup.json").exists()  # LOCAL cost map


def test_bytecode_is_cpython312_unchecked_hash(built_layer):
    site = built_layer.site
    assert built_layer.manifest["bytecode"] == "cpython-312"
    pycs = list(site.rglob("*.cpython-312.pyc"))
    assert len(pycs) > 1000
    assert not list(site.rglob("*.cpython-311.pyc"))
    main_pyc = site / "litellm" / "__pycache__" / "main.cpython-312.pyc"
    header = main_pyc.read_bytes()[:8]
    assert int.from_bytes(header[4:8], "little") == 0b01  # hash-based, unchecked: valid under any mtime
    wheels = [p.name for p in site.glob("*.dist-info")]
    assert any(n.startswith("litellm-1.106.2") for n in wheels)
    so = list((site / "pydantic_core").glob("*.so"))
    assert so and "aarch64" in so[0].name


def test_function_asset_ships_cpython312_bytecode():
    """Every module of the code asset has checked-hash cpython-312 bytecode (an edited source
    is recompiled, never shadowed) whose file name is the runtime's (/var/task), and nothing
    of the build machine's own bytecode."""
    build = load_layer_build()
    asset = build.function_asset_dir()
    sources = sorted(p.relative_to(asset) for p in asset.rglob("*.py"))
    assert sources == sorted(p.relative_to(build.FUNCTIONS) for p in build._function_sources() if p.suffix == ".py")
    assert (asset / "run.sh").exists() and os.access(asset / "run.sh", os.X_OK)
    assert (asset / "tiergate" / "config" / "default_catalog.yaml").exists()
    pycs = list(asset.rglob("*.pyc"))
    assert pycs and all(p.name.endswith(".cpython-312.pyc") for p in pycs)
    assert len(pycs) == len(sources)
    api_pyc = asset / "tiergate" / "handlers" / "__pycache__" / "api.cpython-312.pyc"
    data = api_pyc.read_bytes()
    assert int.from_bytes(data[4:8], "little") == 0b11  # hash-based, checked against the source
    assert b"/var/task/tiergate/handlers/api.py" in data
    assert build.function_asset_dir() == asset  # cached by content hash


#: Imported first in the subprocess below: the packages the layer build removes become
#: unimportable, as they are in Lambda (the host has them installed).
_BLOCKER = """
import sys
BLOCKED = frozenset({blocked!r})
class _RemovedFromLayer:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (removed from the layer)", name=name)
        return None
sys.meta_path.insert(0, _RemovedFromLayer())
"""


def test_provider_suite_passes_on_the_trimmed_litellm(tmp_path):
    """The layer's cuts leave LiteLLM working for us: the provider conformance suite's
    LiteLLM cases (OpenAI and Anthropic wire formats, streaming, tools, errors, retries) run
    on the host's litellm (same pin) trimmed by the layer's own ``trim_litellm``, with every
    package the build removes made unimportable."""
    import litellm  # noqa: TID251 - the test exercises the trim, not gateway code

    build = load_layer_build()
    site = tmp_path / "site"
    # copy2 keeps mtimes, so the host's own bytecode stays valid and nothing recompiles.
    shutil.copytree(Path(litellm.__file__).parent, site / "litellm")
    build.trim_litellm(site / "litellm")
    assert not (site / "litellm" / "proxy" / "proxy_server.py").exists()
    assert not (site / "litellm" / "rust_bridge" / "_native.abi3.so").exists()
    runtime_provided = {"boto3", "botocore", "s3transfer", "bin"}  # in Lambda's runtime: the tests may use them
    blocked = sorted(set(build.REMOVE_TOP_LEVEL) - runtime_provided)
    (site / "_removed_from_layer.py").write_text(_BLOCKER.format(blocked=blocked))
    code = ("import sys, pytest, _removed_from_layer\n"
            "rc = pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/providers/test_conformance.py', '-k', 'litellm'])\n"
            "import litellm, litellm.rust_bridge as rb\n"
            "print('LITELLM_FROM', litellm.__file__, 'NATIVE', rb.native_bridge_available())\n"
            "raise SystemExit(rc)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("LITELLM_RUST", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    tail = out.stdout[-3000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert f"LITELLM_FROM {site}" in out.stdout and "NATIVE False" in out.stdout, tail
    assert " passed" in out.stdout and " failed" not in out.stdout and " skipped" not in out.stdout, tail

"""The real layer build (cached under layers/build/ by requirements hash): contents, bytecode
and the unzipped size budget for function + layer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.infra.conftest import ROOT, load_layer_build

BUDGET_BYTES = 200 * 1000 * 1000  # far below Lambda's 250 MB (function + layers, unzipped)


def _function_asset_bytes() -> int:
    total = 0
    for p in (ROOT / "functions").rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            total += p.stat().st_size
    return total


def test_layer_plus_function_fit_the_size_budget(built_layer):
    layer = built_layer.manifest["unzipped_bytes"]
    function = _function_asset_bytes()
    print(f"\nlayer {layer / 1e6:.1f} MB + function {function / 1e6:.2f} MB = {(layer + function) / 1e6:.1f} MB "
          f"unzipped (budget {BUDGET_BYTES / 1e6:.0f} MB)")
    on_disk = sum(p.stat().st_size for p in built_layer.site.rglob("*") if p.is_file())
    assert on_disk <= layer  # the manifest's figure covers the whole layer tree
    assert layer + function < BUDGET_BYTES


def test_layer_never_ships_forbidden_packages(built_layer):
    site = built_layer.site
    for name in ("llama_cpp", "torch", "pytest", "_pytest", "boto3", "botocore", "moto", "hf_xet"):
        assert not (site / name).exists(), name
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


def test_trimmed_litellm_still_imports(tmp_path):
    """The proxy allowlist is enough for `import litellm` + a (mock) completion: checked on the
    host's litellm (same pin), trimmed exactly as the layer is."""
    import litellm  # noqa: TID251 - the test exercises the trim, not gateway code

    build = load_layer_build()
    src = Path(litellm.__file__).parent
    dst = tmp_path / "litellm"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    build.trim_litellm_proxy(dst / "proxy")
    assert not (dst / "proxy" / "proxy_server.py").exists()
    code = ("import litellm, sys; "
            "r = litellm.completion(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}], "
            "mock_response='pong'); print(r.choices[0].message.content, litellm.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(tmp_path), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                              "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("pong") and str(tmp_path) in out.stdout

"""The CDK app: ``npx cdk synth|deploy`` runs this (see cdk.json). It only creates stacks.

Context: ``-c stage=<name>`` picks a stage from ``tiergate:stages`` in cdk.json;
``-c tiergate:<field>=<value>`` overrides a StageConfig field.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, infra/ is sys.path[0] and infra/constructs would shadow the `constructs`
# package that aws_cdk imports: drop it, import everything through the repo root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
for extra in (ROOT, ROOT / "functions"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.config import StageConfig, load_stage  # noqa: E402
from infra.constructs.cascade import cascade_definition  # noqa: E402
from infra.stacks.data import DataStack  # noqa: E402
from infra.stacks.gateway import GatewayStack  # noqa: E402


def _layer_build():
    spec = importlib.util.spec_from_file_location("tiergate_layer_build", ROOT / "layers" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def built_layer_dir(stage: StageConfig) -> Path:
    """``stage.layer_dir`` or the layers/build.py output (built now if missing)."""
    if stage.layer_dir:
        return Path(stage.layer_dir)
    return _layer_build().layer_dir(stage.architecture)


def built_code_dir() -> Path:
    """The functions' code asset: functions/ with cpython-312 bytecode (layers/build.py),
    so a cold start does not compile the gateway's own modules. Without a Python 3.12 the
    sources alone (a synth still works; a deploy's cold starts then compile them)."""
    build = _layer_build()
    code_dir = build.function_asset_dir(require_bytecode=False)
    if code_dir == build.FUNCTIONS:
        print("warning: no Python 3.12 found (TIERGATE_PYTHON312): the function asset ships without bytecode",
              file=sys.stderr)
    return code_dir


def create_app(
    context: dict[str, Any] | None = None,
    *,
    definition: dict[str, Any] | None = None,
    outdir: str | None = None,
    nag: bool = True,
) -> tuple[cdk.App, DataStack, GatewayStack]:
    """Build the app. ``definition``: cascade ASL (default: tiergate.cascade.definition)."""
    app = cdk.App(context=context, outdir=outdir)
    stage = load_stage({k: app.node.try_get_context(k) for k in _context_keys(app)})
    data = DataStack(app, f"Tiergate-{stage.name}-Data", stage=stage)
    gateway = GatewayStack(
        app, f"Tiergate-{stage.name}-Gateway", stage=stage, code_dir=built_code_dir(),
        layer_dir=built_layer_dir(stage), cascade_definition=definition or cascade_definition(),
    )
    gateway.add_stack_dependency(data)  # tables by name, not by export: deploy order only
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, data, gateway


def _context_keys(app: cdk.App) -> list[str]:
    from infra.config import StageConfig as _S

    return ["stage", "tiergate:stages", *(f"tiergate:{f}" for f in _S.model_fields)]


if __name__ == "__main__":
    create_app()[0].synth()

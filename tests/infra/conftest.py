"""Infra test fixtures: one synth per session (dev and prod stages), the real layer build
(cached under layers/build/ by requirements hash), and a moto server for deploy smoke tests."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

# The built-in CloudFormation validation plugin costs 6-7 s per synth; cdk-nag still runs.
os.environ["CDK_VALIDATION"] = "false"
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("NODE_NO_WARNINGS", "1")

from tests.support.moto_server import AWS_TEST_ENV  # noqa: E402
from tests.support.procs import free_port, port_open, spawn, stop, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def load_layer_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tiergate_layer_build", ROOT / "layers" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def cascade_asl() -> dict:
    """The real definition when the cascades module exists, else the minimal fallback."""
    from infra.constructs.cascade import STEP_ARN_PLACEHOLDER, cascade_definition, fallback_definition

    try:
        return cascade_definition(STEP_ARN_PLACEHOLDER)
    except ImportError:
        return fallback_definition(STEP_ARN_PLACEHOLDER)


@pytest.fixture(scope="session")
def stub_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny layer asset for template tests (the real one is built by ``built_layer``)."""
    root = tmp_path_factory.mktemp("layer")
    (root / "python").mkdir()
    (root / "python" / "placeholder.py").write_text("# stub layer for template tests\n")
    return root


class Synth:
    def __init__(self, outdir: Path, data, gateway) -> None:
        from aws_cdk.assertions import Template

        self.outdir = outdir
        self.data_stack, self.gateway_stack = data, gateway
        self.data = Template.from_json(json.loads((outdir / f"{data.stack_name}.template.json").read_text()))
        self.gateway = Template.from_json(json.loads((outdir / f"{gateway.stack_name}.template.json").read_text()))


def _synth(tmp: Path, stub_layer: Path, stage: str) -> Synth:
    from infra.app import create_app

    app, data, gateway = create_app({"stage": stage, "tiergate:layer_dir": str(stub_layer)},
                                    definition=cascade_asl(), outdir=str(tmp))
    app.synth()  # raises if cdk-nag reports an unacknowledged finding
    return Synth(tmp, data, gateway)


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory, stub_layer: Path) -> Synth:
    return _synth(tmp_path_factory.mktemp("cdk-dev"), stub_layer, "dev")


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory, stub_layer: Path) -> Synth:
    return _synth(tmp_path_factory.mktemp("cdk-prod"), stub_layer, "prod")


@pytest.fixture(scope="session")
def built_layer():
    """The real arm64 layer (built once; reused while requirements and build.py are unchanged)."""
    return load_layer_build().build("arm64")


@pytest.fixture(scope="session")
def moto_cfn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto in server mode with CloudFormation support for AWS::Lambda::Alias (see
    moto_cfn_server.py). Yields ``http://localhost:<port>``: with 127.0.0.1 moto misreads
    the S3 template URL the CDK CLI hands to CloudFormation."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto-cfn") / "moto.log"
    proc = spawn([sys.executable, str(Path(__file__).with_name("moto_cfn_server.py")), "-H", "127.0.0.1",
                  "-p", str(port)], log=log, env=AWS_TEST_ENV)
    try:
        wait_for(lambda: port_open(port), timeout=30, what="moto server", proc=proc)
        yield f"http://localhost:{port}"
    finally:
        stop(proc)

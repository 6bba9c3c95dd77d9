"""Lambda layers: our pinned dependencies (built by layers/build.py) and the public Lambda
Web Adapter layer for the streaming function."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

WEB_ADAPTER_ACCOUNT = "753240598075"
_WEB_ADAPTER_NAMES = {"arm64": "LambdaAdapterLayerArm64", "x86_64": "LambdaAdapterLayerX86"}


def lambda_architecture(name: str) -> lambda_.Architecture:
    return lambda_.Architecture.ARM_64 if name == "arm64" else lambda_.Architecture.X86_64


class DependenciesLayer(Construct):
    """The layer asset directory must contain ``python/`` (see layers/build.py)."""

    def __init__(self, scope: Construct, construct_id: str, *, asset_dir: Path, architecture: str) -> None:
        super().__init__(scope, construct_id)
        if not (asset_dir / "python").is_dir():
            raise FileNotFoundError(f"{asset_dir}/python missing: run `python layers/build.py --arch {architecture}`")
        self.layer = lambda_.LayerVersion(
            self, "Layer",
            code=lambda_.Code.from_asset(str(asset_dir), exclude=["manifest.json"]),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[lambda_architecture(architecture)],
            description="tiergate dependencies (litellm, fastapi, powertools...), cpython-312 bytecode",
            removal_policy=RemovalPolicy.RETAIN,
        )


def web_adapter_layer(scope: Construct, construct_id: str, *, architecture: str, version: int) -> lambda_.ILayerVersion:
    arn = (f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{WEB_ADAPTER_ACCOUNT}:layer:"
           f"{_WEB_ADAPTER_NAMES[architecture]}:{version}")
    return lambda_.LayerVersion.from_layer_version_arn(scope, construct_id, arn)

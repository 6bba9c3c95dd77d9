"""The CDK CLI pinned in package.json: offline ``cdk synth`` (no credentials, dummy env) with
the real layer, and ``cdk bootstrap`` + ``cdk deploy`` against moto in server mode."""

from __future__ import annotations

import os
import shutil
import subprocess

import boto3
import pytest

from tests.infra.conftest import ROOT
from tests.support.moto_server import AWS_TEST_ENV

CDK = ROOT / "node_modules" / ".bin" / "cdk"


@pytest.fixture(scope="module", autouse=True)
def cdk_cli() -> None:
    if not CDK.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True, timeout=600)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"CDK_VALIDATION": "false", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
                "NODE_NO_WARNINGS": "1", "CDK_DISABLE_VERSION_CHECK": "1"})
    env.update(extra)
    return env


def _cdk(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(["npx", "cdk", *args, "--no-notices"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    return out


def test_offline_synth_with_the_real_layer(tmp_path, built_layer):
    # No credentials at all: the app's explicit dummy env must be enough.
    env = _clean_env(HOME=str(tmp_path))
    outdir = tmp_path / "cdk.out"
    _cdk(["synth", "--all", "--quiet", "-o", str(outdir), "-c", f"tiergate:layer_dir={built_layer.root}"], env)
    assert (outdir / "Tiergate-dev-Data.template.json").exists()
    assert (outdir / "Tiergate-dev-Gateway.template.json").exists()
    staged = [p for p in outdir.glob("asset.*") if (p / "python" / "litellm").is_dir()]
    assert len(staged) == 1  # the real layer is the asset
    code = [p for p in outdir.glob("asset.*") if (p / "tiergate" / "handlers" / "api.py").exists()]
    assert len(code) == 1  # one code asset for the three functions, with its cpython-312 bytecode only
    assert (code[0] / "tiergate" / "handlers" / "__pycache__" / "api.cpython-312.pyc").exists()
    assert not [p for p in code[0].rglob("*.pyc") if not p.name.endswith(".cpython-312.pyc")]


def test_bootstrap_and_deploy_against_moto(tmp_path, moto_cfn, stub_layer):
    env = _clean_env(**AWS_TEST_ENV, AWS_ENDPOINT_URL=moto_cfn, HOME=str(tmp_path))
    outdir = tmp_path / "cdk.out"
    _cdk(["bootstrap", "aws://123456789012/us-east-1", "-o", str(outdir), "-c", f"tiergate:layer_dir={stub_layer}"], env)
    _cdk(["deploy", "--all", "--require-approval", "never", "-o", str(outdir),
          "-c", f"tiergate:layer_dir={stub_layer}"], env)

    def client(service: str):
        return boto3.client(service, endpoint_url=moto_cfn, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    stacks = {s["StackName"]: s for s in client("cloudformation").describe_stacks()["Stacks"]}
    for name in ("CDKToolkit", "Tiergate-dev-Data", "Tiergate-dev-Gateway"):
        assert stacks[name]["StackStatus"] == "CREATE_COMPLETE", stacks[name]

    ddb = client("dynamodb")
    names = set(ddb.list_tables()["TableNames"])
    assert {f"tiergate-dev-{t}" for t in ("keys", "budgets", "ratelimits", "usage", "idempotency",
                                          "responses")} <= names
    usage = ddb.describe_table(TableName="tiergate-dev-usage")["Table"]
    assert usage["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert [i["IndexName"] for i in usage["GlobalSecondaryIndexes"]] == ["by_tenant"]

    lam = client("lambda")
    functions = {f["FunctionName"]: f for f in lam.list_functions()["Functions"]}
    # moto cannot resolve the public Lambda Web Adapter layer (another account's layer ARN), so
    # it skips the streaming function; tests/infra/test_templates.py covers that one.
    assert {"tiergate-dev-api", "tiergate-dev-cascade"} <= set(functions)
    api = lam.get_function(FunctionName="tiergate-dev-api")["Configuration"]
    assert api["Handler"] == "tiergate.handlers.api.handler" and api["Runtime"] == "python3.12"
    assert api["Environment"]["Variables"]["TIERGATE_TABLE_KEYS"] == "tiergate-dev-keys"
    assert len(lam.list_versions_by_function(FunctionName="tiergate-dev-api")["Versions"]) >= 2  # $LATEST + published

    machines = client("stepfunctions").list_state_machines()["stateMachines"]
    assert [m["name"] for m in machines] == ["tiergate-dev-cascade"]
    shutil.rmtree(outdir, ignore_errors=True)

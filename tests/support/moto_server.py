"""moto in server mode: a real HTTP endpoint on 127.0.0.1, driven by boto3 as AWS is.

``moto_server`` (session scope) starts ``moto_server`` as a subprocess on a free port
and yields its base URL. Tests that need a clean slate call ``moto_reset(url)``; tests
that execute state machines call ``moto_config(url, ...)`` first.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.procs import free_port, port_open, spawn, stop, wait_for

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def _post(url: str, body: dict | None = None) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(url, data=data, method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def moto_reset(url: str) -> None:
    _post(f"{url}/moto-api/reset")


def moto_config(url: str, config: dict) -> None:
    _post(f"{url}/moto-api/config", config)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log=log, env=AWS_TEST_ENV)
    try:
        wait_for(lambda: port_open(port), timeout=30, what="moto server", proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Dummy credentials so boto3 never looks for real ones."""
    for k, v in AWS_TEST_ENV.items():
        monkeypatch.setenv(k, v)
    return dict(AWS_TEST_ENV)

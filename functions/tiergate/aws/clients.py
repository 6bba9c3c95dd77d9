"""boto3 clients for the control plane: the only module here that imports boto3."""

from __future__ import annotations

from typing import Any


def client(service: str, *, endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 client; ``endpoint_url`` points it at moto/LocalStack in tests."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url, region_name=region)

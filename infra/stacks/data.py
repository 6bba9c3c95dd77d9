"""The data stack: the gateway's DynamoDB tables, kept apart so the gateway stack can be
replaced or destroyed without touching data."""

from __future__ import annotations

from aws_cdk import Environment, Stack
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.tables import TiergateTables
from infra.nag import acknowledge_data


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig) -> None:
        super().__init__(
            scope, construct_id,
            env=Environment(account=stage.account, region=stage.region),
            description=f"tiergate {stage.name}: DynamoDB tables",
            termination_protection=stage.production,
        )
        self.tables = TiergateTables(self, "Tables", prefix=stage.prefix, production=stage.production)
        acknowledge_data(self)

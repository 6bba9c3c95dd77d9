"""The gateway's DynamoDB tables (the record stores under tiergate/limits and stores/dynamodb).

Every table: partition key ``pk`` (S), sort key ``sk`` (S), TTL attribute ``expires_at``
(epoch seconds), on-demand billing; ``cache`` (the exact response cache,
tiergate/cache/dynamodb.py) has ``pk`` alone. ``usage`` also has the GSI ``by_tenant``
(``tenant`` S, ``ts`` S). Point-in-time recovery on ``keys`` and ``budgets`` (the only
tables whose loss cannot be rebuilt); retain + deletion protection in production.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as ddb
from constructs import Construct

TTL_ATTRIBUTE = "expires_at"
USAGE_BY_TENANT_INDEX = "by_tenant"


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    pitr: bool
    sort_key: bool = True


TABLE_SPECS = (
    TableSpec("Keys", pitr=True),
    TableSpec("Budgets", pitr=True),
    TableSpec("RateLimits", pitr=False),
    TableSpec("Usage", pitr=False),
    TableSpec("Idempotency", pitr=False),
    # Responses API state (store: true): per key, TTL'd, write-once puts (see limits/stored_responses).
    TableSpec("Responses", pitr=False),
    TableSpec("Cache", pitr=False, sort_key=False),
)


def table_name(prefix: str, logical_id: str) -> str:
    """Tables have fixed names, so other stacks reference them without exports."""
    return f"{prefix}-{logical_id.lower()}"


#: The settings suffix (TIERGATE_TABLE_<KEY>) of each table.
SETTINGS_KEYS = {"Keys": "KEYS", "Budgets": "BUDGETS", "RateLimits": "RATELIMITS", "Usage": "USAGE",
                 "Idempotency": "IDEMPOTENCY", "Responses": "RESPONSES",
                 "Cache": "CACHE"}
#: Indexes per table (the gateway's IAM policy names each one; no index/* wildcard).
TABLE_INDEXES = {"Usage": (USAGE_BY_TENANT_INDEX,)}


class TiergateTables(Construct):
    """``keys``, ``budgets``, ``ratelimits``, ``usage``, ``idempotency``, ``responses``, ``cache`` as attributes."""

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str, production: bool) -> None:
        super().__init__(scope, construct_id)
        built = {spec.logical_id: self._table(spec, prefix=prefix, production=production)
                 for spec in TABLE_SPECS}
        self.keys: ddb.Table = built["Keys"]
        self.budgets: ddb.Table = built["Budgets"]
        self.ratelimits: ddb.Table = built["RateLimits"]
        self.usage: ddb.Table = built["Usage"]
        self.idempotency: ddb.Table = built["Idempotency"]
        self.responses: ddb.Table = built["Responses"]
        self.cache: ddb.Table = built["Cache"]
        self.usage.add_global_secondary_index(
            index_name=USAGE_BY_TENANT_INDEX,
            partition_key=ddb.Attribute(name="tenant", type=ddb.AttributeType.STRING),
            sort_key=ddb.Attribute(name="ts", type=ddb.AttributeType.STRING),
        )

    def _table(self, spec: TableSpec, *, prefix: str, production: bool) -> ddb.Table:
        return ddb.Table(
            self, spec.logical_id,
            table_name=table_name(prefix, spec.logical_id),
            partition_key=ddb.Attribute(name="pk", type=ddb.AttributeType.STRING),
            sort_key=ddb.Attribute(name="sk", type=ddb.AttributeType.STRING) if spec.sort_key else None,
            billing_mode=ddb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=spec.pitr),
            deletion_protection=production,
            removal_policy=RemovalPolicy.RETAIN if production else RemovalPolicy.DESTROY,
        )

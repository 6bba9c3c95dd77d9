"""Record stores: SQLite (embedded default), DynamoDB (cloud), and in-memory SQLite."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiergate.settings import Settings
    from tiergate.stores.base import RecordStore


def table_names(settings: Settings) -> dict[str, str]:
    """Logical table -> physical DynamoDB table name (set by CDK through the environment)."""
    return {"keys": settings.table_keys, "budgets": settings.table_budgets,
            "ratelimits": settings.table_ratelimits, "usage": settings.table_usage,
            "idempotency": settings.table_idempotency, "responses": settings.table_responses}


def open_store(settings: Settings, *, create_tables: bool = False) -> RecordStore:
    """The store ``settings.store`` names. Heavy imports (boto3) happen only when chosen.

    ``create_tables`` (DynamoDB, dev/tests only) creates missing tables; in the cloud CDK
    owns them."""
    if settings.store == "dynamodb":
        from tiergate.stores import dynamodb

        client = dynamodb.make_client(settings.dynamodb_endpoint_url)
        if create_tables:
            dynamodb.create_tables(client, table_names(settings))
        return dynamodb.DynamoStore(client, table_names(settings))
    from tiergate.stores.sqlite import SqliteStore

    if settings.store == "memory":
        return SqliteStore(":memory:")
    return SqliteStore(settings.resolved_sqlite_path)

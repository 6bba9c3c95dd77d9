"""create_tables (dev/tests) on a DynamoDB that already holds many tables."""

from __future__ import annotations

import uuid

from tiergate.cache.dynamodb import create_table as create_cache_table
from tiergate.stores import dynamodb


def test_create_tables_sees_tables_past_the_first_list_page(dynalite_tables):
    # list_tables answers 100 names a page; a table past the first page was taken for
    # missing and its CreateTable failed (ResourceInUseException) -- a gateway restarted
    # on a busy dynalite could not start (the CI crash test did this).
    client = dynamodb.make_client(dynalite_tables["dynamodb_endpoint_url"])
    run = uuid.uuid4().hex[:8]
    for i in range(101):
        client.create_table(
            TableName=f"a{run}-{i:03d}", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    names = {"usage": f"z{run}-usage", "budgets": f"z{run}-budgets"}
    dynamodb.create_tables(client, names)
    dynamodb.create_tables(client, names)  # a restart: every table exists, some past page 1
    create_cache_table(client, f"z{run}-cache")
    create_cache_table(client, f"z{run}-cache")  # the cache's own helper, restarted likewise
    assert client.describe_table(TableName=f"z{run}-cache")["Table"]["TableStatus"] == "ACTIVE"
    tables = client.describe_table(TableName=names["usage"])["Table"]
    assert tables["TableStatus"] == "ACTIVE"
    assert [i["IndexName"] for i in tables["GlobalSecondaryIndexes"]] == ["by_tenant"]

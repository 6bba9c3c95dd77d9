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


def test_the_emulator_survives_a_client_dying_mid_request(dynalite_tables):
    # The crash tests kill -9 a gateway while it writes to dynalite; dynalite rethrew the
    # half-sent request's error and died, failing every DynamoDB test after it. The
    # emulator now runs behind tests/support/dynalite_server.js, which drops that request.
    import socket
    import urllib.parse

    url = urllib.parse.urlsplit(dynalite_tables["dynamodb_endpoint_url"])
    for _ in range(3):
        s = socket.create_connection((url.hostname, url.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\n"
                  b"X-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 1000\r\n\r\n{\"Li")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # a reset, mid-body: what a killed process leaves
    client = dynamodb.make_client(dynalite_tables["dynamodb_endpoint_url"])
    assert isinstance(client.list_tables(Limit=1)["TableNames"], list)

"""The AWS control plane the cloud home uses: clients, the provider-keys secret, the
cascade state machine, Powertools telemetry. boto3 and Powertools are imported lazily,
and only under this package (data access is :mod:`tiergate.stores.dynamodb`)."""

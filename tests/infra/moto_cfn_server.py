"""moto server, plus CloudFormation support for ``AWS::Lambda::Alias``.

moto 5.2 models Lambda aliases (``CreateAlias``) but not the CloudFormation resource, so a
template whose API Gateway permission and integration target ``function:live`` fails with
"Function not found". This registers the resource on moto's own Lambda backend and then
runs the normal ``moto.server`` entry point:

    python tests/infra/moto_cfn_server.py -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import sys
from typing import Any

from moto.awslambda.models import lambda_backends
from moto.core.common_models import CloudFormationModel


class LambdaAliasResource(CloudFormationModel):
    # moto's model metaclass derives the service from the module path ("moto.<service>...").
    __module__ = "moto.awslambda.cfn_alias"

    def __init__(self, arn: str) -> None:
        self.arn = arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::Alias"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any,
    ) -> LambdaAliasResource:
        props = cloudformation_json["Properties"]
        alias = lambda_backends[account_id][region_name].create_alias(
            name=props["Name"], function_name=props["FunctionName"],
            function_version=str(props["FunctionVersion"]), description=props.get("Description", ""),
            routing_config=props.get("RoutingConfig"),
        )
        return cls(alias.arn)

    @property
    def physical_resource_id(self) -> str:
        return self.arn


if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])

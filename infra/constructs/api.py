"""The public REST API in front of the gateway functions.

Routes: everything (``/`` and ``/{proxy+}``, plus ``/v1/{proxy+}``, ``/dashboard``,
``/dashboard/{proxy+}`` and ``/metrics``) goes to the buffered function (FastAPI through
Mangum). When a streaming handler is given, the doors that can
stream -- ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/messages`` (Anthropic) and
``/v1/responses`` -- go to it instead with ``responseTransferMode: STREAM`` (API Gateway calls ``InvokeWithResponseStream``; the
function runs the same app under uvicorn behind the Lambda Web Adapter). A non-streaming
request on those routes is simply a response that arrives in one piece.

Auth is the gateway's own keys (OpenAI clients send ``Authorization: Bearer``, Anthropic
clients ``x-api-key``), so methods use no API Gateway authorizer.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.functions import log_group

STREAMING_ROUTES = (("v1", "chat", "completions"), ("v1", "completions"), ("v1", "messages"), ("v1", "responses"))


class GatewayApi(Construct):
    """Attributes: ``api``, ``access_logs``, ``stage_name``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_name: str,
        stage_name: str,
        buffered_handler: lambda_.IFunction,
        streaming_handler: lambda_.IFunction | None,
        buffered_timeout_s: int,
        streaming_timeout_s: int,
        throttle_rate_limit: float,
        throttle_burst_limit: int,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.stage_name = stage_name
        self.access_logs = log_group(self, "AccessLogs", days=log_retention_days)
        self.api = apigw.RestApi(
            self, "Api",
            rest_api_name=api_name,
            description="tiergate: OpenAI-compatible LLM gateway",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                throttling_rate_limit=throttle_rate_limit,
                throttling_burst_limit=throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=False,
                ),
                # Execution logs at ERROR, never request/response bodies (prompts).
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
            ),
        )
        buffered = apigw.LambdaIntegration(
            buffered_handler, proxy=True, timeout=Duration.seconds(min(buffered_timeout_s, 29)),
            scope_permission_to_method=False,
        )
        self.api.root.add_method("ANY", buffered)
        self.api.root.add_resource("{proxy+}").add_method("ANY", buffered)
        v1 = self.api.root.add_resource("v1")
        v1.add_method("ANY", buffered)
        # API Gateway does not backtrack to the root greedy path once /v1 matched.
        v1.add_resource("{proxy+}").add_method("ANY", buffered)
        # The operators' views, named so the stage's routing says they are served (and a
        # change to the greedy routes cannot drop them): the dashboard page, its assets,
        # sign-in and data (text only: no binary media types needed), and /metrics.
        dashboard = self.api.root.add_resource("dashboard")
        dashboard.add_method("GET", buffered)
        dashboard.add_resource("{proxy+}").add_method("ANY", buffered)
        self.api.root.add_resource("metrics").add_method("GET", buffered)
        if streaming_handler is not None:
            streaming = apigw.LambdaIntegration(
                streaming_handler, proxy=True, timeout=Duration.seconds(streaming_timeout_s),
                response_transfer_mode=apigw.ResponseTransferMode.STREAM,
                scope_permission_to_method=False,
            )
            for route in STREAMING_ROUTES:
                resource = self.api.root
                for part in route:
                    resource = resource.get_resource(part) or resource.add_resource(part)
                resource.add_method("POST", streaming)
                # Paths below a streaming door (/v1/messages/count_tokens, GET|DELETE
                # /v1/responses/{id}) stay buffered: a static resource shadows /v1/{proxy+}.
                if resource.get_resource("{proxy+}") is None:
                    resource.add_resource("{proxy+}").add_method("ANY", buffered)

    @property
    def url(self) -> str:
        return self.api.url

"""CloudWatch dashboard and alarms for one stage.

Dashboard: requests, p50/p99 latency (API Gateway and the gateway's own ``LatencyMs``),
cost per tier, errors (5xx/4xx and gateway errors per tier), budget utilization.
Alarms: 5xx rate, p99 latency, a budget at the configured threshold (80% by default).
The custom metric names come from tiergate.telemetry, the module that emits them.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from tiergate import telemetry as t

TIERS = (0, 1, 2, 3, 4)
PERIOD = Duration.minutes(5)


class GatewayObservability(Construct):
    """Attributes: ``dashboard``, ``alarm_5xx``, ``alarm_p99``, ``alarm_budget``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        api_name: str,
        api_stage: str,
        service: str,
        namespace: str,
        p99_latency_ms: int,
        error_rate_percent: float,
        budget_percent: float,
        alarm_topic: sns.ITopic | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._api = {"ApiName": api_name, "Stage": api_stage}
        self._service = service
        self._namespace = namespace
        requests = self._apigw("Count", "SampleCount")
        errors_5xx = self._apigw("5XXError", "Sum")
        p50, p99 = self._apigw("Latency", "p50"), self._apigw("Latency", "p99")
        rate_5xx = cw.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={"errors": errors_5xx, "requests": self._apigw("Count", "Sum")},
            label="5xx rate %", period=PERIOD,
        )
        budget = self._custom(t.METRIC_BUDGET_UTILIZATION, "Maximum")

        self.alarm_5xx = rate_5xx.create_alarm(
            self, "Api5xxRate", alarm_description=f"5xx responses above {error_rate_percent}% of requests",
            threshold=error_rate_percent, evaluation_periods=3, datapoints_to_alarm=2,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.alarm_p99 = p99.create_alarm(
            self, "ApiP99Latency", alarm_description=f"p99 latency above {p99_latency_ms} ms",
            threshold=p99_latency_ms, evaluation_periods=3, datapoints_to_alarm=2,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.alarm_budget = budget.create_alarm(
            self, "BudgetUtilization", alarm_description=f"a budget reached {budget_percent}% of its limit",
            threshold=budget_percent, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        if alarm_topic is not None:
            for alarm in (self.alarm_5xx, self.alarm_p99, self.alarm_budget):
                alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Requests", left=[requests], width=8),
            cw.GraphWidget(title="Latency p50 / p99 (API Gateway, ms)", left=[p50, p99], width=8),
            cw.GraphWidget(title="Gateway latency p50 / p99 by tier (ms)", width=8, left=[
                self._custom(t.METRIC_LATENCY, stat, tier=tier) for tier in TIERS for stat in ("p50", "p99")]),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Cost per tier (USD)", stacked=True, width=8, left=[
                self._custom(t.METRIC_COST, "Sum", tier=tier) for tier in TIERS]),
            cw.GraphWidget(title="Errors", width=8,
                           left=[errors_5xx, self._apigw("4XXError", "Sum")],
                           right=[self._custom(t.METRIC_ERRORS, "Sum", tier=tier) for tier in TIERS]),
            cw.GraphWidget(title="Budget utilization (%)", width=8, left=[budget],
                           left_annotations=[cw.HorizontalAnnotation(value=budget_percent, label="alarm")]),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Tokens per tier", stacked=True, width=12, left=[
                self._custom(name, "Sum", tier=tier)
                for name in (t.METRIC_PROMPT_TOKENS, t.METRIC_COMPLETION_TOKENS) for tier in TIERS]),
            cw.GraphWidget(title="Cache hits per tier", width=12, left=[
                self._custom(t.METRIC_CACHE_HITS, "Sum", tier=tier) for tier in TIERS]),
            cw.AlarmStatusWidget(title="Alarms", alarms=[self.alarm_5xx, self.alarm_p99, self.alarm_budget],
                                 width=24),
        )

    def _apigw(self, name: str, statistic: str) -> cw.Metric:
        return cw.Metric(namespace="AWS/ApiGateway", metric_name=name, dimensions_map=self._api,
                         statistic=statistic, period=PERIOD, label=f"{name} {statistic}")

    def _custom(self, name: str, statistic: str, *, tier: int | None = None) -> cw.Metric:
        dims = {"service": self._service}
        if tier is not None:
            dims[t.DIMENSION_TIER] = str(tier)
        label = f"{name} {statistic}" + (f" tier {tier}" if tier is not None else "")
        return cw.Metric(namespace=self._namespace, metric_name=name, dimensions_map=dims,
                         statistic=statistic, period=PERIOD, label=label)

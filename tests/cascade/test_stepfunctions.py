"""The cascade on Step Functions: the generated ASL validates; an interpreter walks it with
the real task handler (simulator behind the real Executor); the parity suite runs the same
scenarios in process and on the state machine and compares every step; moto executes the
definition along the path the handler's outputs choose."""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.request
import uuid
import zipfile

import boto3
import httpx
import pytest
from statelint.config import Config
from statelint.linter import Linter

from tests.cascade.conftest import BROKEN_PY, CODE_ASK, GOOD_PY
from tests.support.asl import Interpreter
from tests.support.moto_server import moto_config
from tiergate.cascade import steps
from tiergate.cascade.definition import LAMBDA_TRANSIENT, definition
from tiergate.compose import build_services
from tiergate.config.cascades import CascadePolicy
from tiergate.errors import RETRYABLE_ERROR_NAMES, InvalidRequest, UpstreamServerError
from tiergate.handlers.cascade import CascadeTasks
from tiergate.limits.admission import Principal
from tiergate.limits.master_key import MasterKeyAdmission
from tiergate.request import GatewayRequest
from tiergate.settings import Settings

FN_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tiergate-cascade-step"


def lint(asl: dict) -> list[str]:
    return Linter.validate(json.dumps(asl), Config([], False, False))


@pytest.mark.parametrize("policy", [CascadePolicy(), CascadePolicy(max_cost_usd=0.01),
                                    CascadePolicy(mode="refine", tiers=[0, 2], judge={"model": "tier:3"})])
def test_definition_validates(policy):
    asl = definition(policy, step_function_arn=FN_ARN)
    assert lint(asl) == []
    answer = asl["States"]["Answer"]
    assert answer["Resource"] == "arn:aws:states:::lambda:invoke"
    assert answer["Retry"][0]["ErrorEquals"] == [*RETRYABLE_ERROR_NAMES, *LAMBDA_TRANSIENT]
    assert answer["Catch"][0]["Next"] == "Recover"
    assert asl["States"]["Init"]["Parameters"]["policy"]["spec"] == policy.model_dump(mode="json")
    # Every decision is the shared steps': the only Choice reads cursor.next.
    choices = [s for s in asl["States"].values() if s["Type"] == "Choice"]
    assert len(choices) == 1 and {c["Variable"] for c in choices[0]["Choices"]} == {"$.cursor.next"}


def test_the_validator_catches_a_broken_definition():
    asl = definition(CascadePolicy(), step_function_arn=FN_ARN)
    asl["States"]["Score"]["Next"] = "Nowhere"
    assert lint(asl)


def test_parallel_policies_are_in_process_only():
    with pytest.raises(ValueError):
        definition(CascadePolicy(mode="parallel"), step_function_arn=FN_ARN)


# --- running the state machine with the real task handler ---------------------------------


def execution_input(services, policy_name, body=None, *, principal=None, request_id="req-1"):
    """What the API function sends to StartSyncExecution: the shared start state."""
    policy = services.catalog.cascades[policy_name]
    state = steps.start(policy, policy_name, body or {"messages": CODE_ASK}, task_type="coding",
                        principal=(principal or Principal(key_id="k")).snapshot(), request_id=request_id)
    return {k: v for k, v in state.items() if k != "policy"}


def on_state_machine(tasks, services, policy_name, inp):
    asl = definition(services.catalog.cascades[policy_name], step_function_arn=FN_ARN, policy_name=policy_name)
    return Interpreter(asl, lambda arn, payload: tasks(payload)).run(inp)


@pytest.fixture
def tasks(services):
    t = CascadeTasks(services)
    yield t
    t.close()


def test_handler_answer_score_finish(tasks, services, sim):
    sim.script("small-0", {"content": BROKEN_PY})
    sim.script("mid-1", {"content": GOOD_PY})
    ex = on_state_machine(tasks, services, "default", execution_input(services, "default"))
    assert ex.status == "SUCCEEDED"
    assert ex.path.count("Answer") == 2 and ex.path[-2:] == ["Next?", "Finish"]
    final = ex.output
    assert final["model"] == "mid" and final["response"]["choices"][0]["message"]["content"] == GOOD_PY
    assert [s["status"] for s in final["response"]["tiergate_cascade"]["steps"]] == ["rejected", "accepted"]
    assert final["header"].startswith("escalate;0:small=0.20:rejected;1:mid=1.00:accepted")


def test_handler_raises_gateway_error_classes(tasks, services, sim):
    sim.script("small-0", {"status": 500})
    state = {**execution_input(services, "default"),
             "policy": {"name": "default", "spec": services.catalog.cascades["default"].model_dump(mode="json")}}
    with pytest.raises(UpstreamServerError) as e:
        tasks({"step": "answer", "state": state})
    assert type(e.value).__name__ in RETRYABLE_ERROR_NAMES  # Step Functions' errorType -> Retry
    with pytest.raises(InvalidRequest):
        tasks({"step": "explode", "state": state})
    with pytest.raises(InvalidRequest):
        tasks({"step": "answer"})


def test_every_step_failing_fails_with_the_error_name(tasks, services, sim):
    sim.set_default("small-0", {"status": 500})
    sim.set_default("mid-1", {"status": 500})
    sim.set_default("big-2", {"status": 500})
    ex = on_state_machine(tasks, services, "default", execution_input(services, "default"))
    assert ex.status == "FAILED" and ex.error == "UpstreamServerError" and ex.path[-1] == "Failed"
    assert ex.path.count("Recover") == 3


# --- parity: the same scenarios in process and on the state machine ------------------------


class SoftLimited(MasterKeyAdmission):
    """Every reservation reports a soft limit with a tier-0 ceiling (as a budget past 80 %)."""

    def __init__(self):
        super().__init__(None)

    async def admit(self, principal, req):
        t = await super().admit(principal, req)
        t.soft_limited, t.max_tier = True, 0
        return t


SCENARIOS = {
    "accept": ("default", {"small-0": [{"content": GOOD_PY}]}, None),
    "escalate": ("default", {"small-0": [{"content": BROKEN_PY}], "mid-1": [{"content": GOOD_PY}]}, None),
    "all weak": ("default", {"small-0": [{"content": ""}], "mid-1": [{"content": BROKEN_PY}],
                             "big-2": [{"content": ("def add(a, b):", "length")}]}, None),
    "ceiling": ("capped", {"small-0": [{"content": BROKEN_PY}], "mid-1": [{"content": BROKEN_PY}]}, None),
    "refine_always": ("refine", {"small-0": [{"content": GOOD_PY}], "big-2": [{"content": GOOD_PY}]}, None),
    "soft-budget ceiling": ("default", {"small-0": [{"content": BROKEN_PY}], "mid-1": [{"content": GOOD_PY}]},
                            SoftLimited),
    "judge failure": ("judged", {"small-0": [{"content": "Paris is the capital of France."}],
                                 "big-2": [{"status": 500}]}, None),
    "upstream failure": ("default", {"small-0": [{"status": 500, "count": 3}], "mid-1": [{"content": GOOD_PY}]},
                         None),
}


def _script(sim, plan):
    sim.reset()
    for model, seq in plan.items():
        for step in seq:
            content = step.get("content")
            if isinstance(content, tuple):  # (text, finish_reason)
                step = {**step, "content": content[0], "finish_reason": content[1]}
            sim.script(model, step)


def _comparable(step_dicts):
    return [(s["index"], s["purpose"], s["target"], s["status"], s["model"], s["score"], tuple(s["reasons"]),
             round(s["cost_usd"], 8)) for s in step_dicts]


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_parity_in_process_and_state_machine(name, sim, sim_catalog, tmp_path):
    policy_name, plan, admission_cls = SCENARIOS[name]
    kw = {"admission": admission_cls()} if admission_cls else {}
    services = build_services(Settings(data_dir=tmp_path, store="memory"), sim_catalog, **kw)
    body = {"model": f"cascade:{policy_name}", "messages": CODE_ASK}
    if policy_name == "judged":
        body["messages"] = [{"role": "user", "content": "What is the capital of France?"}]
    _script(sim, plan)
    req = GatewayRequest.from_chat(body, aliases={}, default_model="auto")
    local = await services.cascades.run(req, Principal(key_id="k"), policy_name=policy_name, request_id="r1")

    await services.registry.aclose()

    # The state machine's task function has its own services (its own process in AWS).
    _script(sim, plan)
    policy = services.catalog.cascades[policy_name]
    state = steps.start(policy, policy_name, body, task_type=req.task.task_type,
                        principal=Principal(key_id="k").snapshot(), request_id="r2")
    asl = definition(policy, step_function_arn=FN_ARN, policy_name=policy_name)

    def on_sfn():
        tasks = CascadeTasks(build_services(Settings(data_dir=tmp_path, store="memory"), sim_catalog,
                                            **({"admission": admission_cls()} if admission_cls else {})))
        try:
            return Interpreter(asl, lambda arn, p: tasks(p)).run({k: v for k, v in state.items() if k != "policy"})
        finally:
            tasks.close()

    ex = await asyncio.to_thread(on_sfn)
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    remote = ex.output
    assert _comparable(remote["response"]["tiergate_cascade"]["steps"]) == _comparable(local.steps)
    assert remote["model"] == local.deployment.name and remote["header"] == local.header_value
    assert remote["stop_reason"] == local.stop_reason
    assert remote["response"]["choices"] == local.response["choices"]
    if name == "soft-budget ceiling":
        assert [s["target"] for s in local.steps] == ["tier:0"]  # tier 1 and 2 are above the ceiling
    if name == "judge failure":
        assert "judge:unavailable" in local.steps[0]["reasons"]
    if name == "refine_always":
        assert [s["status"] for s in local.steps] == ["draft", "accepted"]


# --- moto executes the state machine -------------------------------------------------


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


# moto deep-copies a state machine's whole backend when an execution starts, and a finished
# execution holds a lock that cannot be copied: one execution per region, so each test
# executes in a region of its own.
REGIONS = {"test_moto_accepts_at_tier_0": "us-west-1", "test_moto_escalates_twice": "us-west-2",
           "test_moto_recovers_from_a_failed_step": "eu-west-1",
           "test_moto_fails_with_the_recorded_error": "eu-central-1"}


@pytest.fixture
def sfn(moto_server, aws_env, request):
    moto_config(moto_server, {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})
    region = REGIONS[request.node.name]
    kw = {"endpoint_url": moto_server, "region_name": region}
    iam, lam, sfn = boto3.client("iam", **kw), boto3.client("lambda", **kw), boto3.client("stepfunctions", **kw)
    suffix = uuid.uuid4().hex[:8]
    role = iam.create_role(RoleName=f"tg-cascade-{suffix}", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": ["lambda.amazonaws.com",
                                                                          "states.amazonaws.com"]}}]}))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return event\n")
    fn = lam.create_function(FunctionName=f"tg-cascade-step-{suffix}", Runtime="python3.11", Role=role,
                             Handler="tiergate.handlers.cascade.handler", Code={"ZipFile": buf.getvalue()})

    def run(policy, name, results, exec_input):
        asl = definition(policy, step_function_arn=fn["FunctionArn"], policy_name=name)
        arn = sfn.create_state_machine(name=f"tg-cascade-{uuid.uuid4().hex[:8]}", definition=json.dumps(asl),
                                       roleArn=role, type="STANDARD")["stateMachineArn"]
        # moto's Lambda answers with these results in order; an oversized result is a
        # function error (Lambda.ResponseSizeTooLarge-like), which the Catch handles.
        payloads = ["x" * 6_100_000 if isinstance(r, tuple) else json.dumps(r) for r in results]
        assert _post(f"{moto_server}/moto-api/static/lambda-simple/response",
                     {"results": payloads, "region": region}) == 201
        ex = sfn.start_execution(stateMachineArn=arn, name=f"run-{uuid.uuid4().hex}", input=json.dumps(exec_input))
        deadline = time.monotonic() + 30
        while (d := sfn.describe_execution(executionArn=ex["executionArn"]))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "execution did not finish"
            time.sleep(0.1)
        events = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=1000)["events"]
        entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        return d, entered

    return run


def _moto_check(sfn, tasks, services, name="default"):
    inp = execution_input(services, name)
    ex = on_state_machine(tasks, services, name, inp)
    d, entered = sfn(services.catalog.cascades[name], name, ex.outcomes, inp)
    assert entered == ex.path
    return ex, d, entered


def test_moto_accepts_at_tier_0(sfn, tasks, services, sim):
    sim.script("small-0", {"content": GOOD_PY})
    ex, d, entered = _moto_check(sfn, tasks, services)
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == ex.output
    assert entered == ["Init", "Next?", "Answer", "AnswerResult", "Score", "ScoreResult", "Next?", "Finish"]


def test_moto_escalates_twice(sfn, tasks, services, sim):
    sim.script("small-0", {"content": ""})
    sim.script("mid-1", {"content": BROKEN_PY})
    sim.script("big-2", {"content": GOOD_PY})
    ex, d, entered = _moto_check(sfn, tasks, services)
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"])["model"] == "big"
    assert entered.count("Answer") == 3


def test_moto_recovers_from_a_failed_step(sfn, tasks, services, sim):
    # A function error in moto is an oversized result: moto reports it, the Catch routes it
    # to Recover, which records it and escalates (the same decision as in process).
    sim.script("small-0", {"content": BROKEN_PY})
    sim.script("big-2", [{"content": GOOD_PY}, {"content": GOOD_PY}])
    inp = execution_input(services, "default")
    first = on_state_machine(tasks, services, "default", inp)  # only the first two results are used
    results = list(first.outcomes)
    # Replace tier 1's answer by a function error, then run recover/answer/score/finish for real.
    state = {**inp, "policy": {"name": "default",
                               "spec": services.catalog.cascades["default"].model_dump(mode="json")}}
    state["current"] = results[0]
    state["cursor"] = results[1]
    state["error"] = {"Error": "Lambda.Unknown", "Cause": "too large"}
    recovered = tasks({"step": "recover", "state": state})
    state["cursor"] = recovered
    answered = tasks({"step": "answer", "state": state})
    state["current"] = answered
    scored = tasks({"step": "score", "state": state})
    state["cursor"] = scored
    final = tasks({"step": "finish", "state": state})
    d, entered = sfn(services.catalog.cascades["default"], "default",
                     [results[0], results[1], ("error",), recovered, answered, scored, final], inp)
    assert d["status"] == "SUCCEEDED", d
    assert entered[:12] == ["Init", "Next?", "Answer", "AnswerResult", "Score", "ScoreResult", "Next?", "Answer",
                            "Recover", "RecoverResult", "Next?", "Answer"]
    out = json.loads(d["output"])
    assert out["model"] == "big"
    assert [s["status"] for s in out["response"]["tiergate_cascade"]["steps"]] == ["rejected", "error", "accepted"]


def test_moto_fails_with_the_recorded_error(sfn, tasks, services, sim):
    sim.set_default("small-0", {"status": 500})
    sim.set_default("mid-1", {"status": 500})
    sim.set_default("big-2", {"status": 500})
    ex, d, entered = _moto_check(sfn, tasks, services)
    assert d["status"] == "FAILED" and entered[-1] == "Failed"
    assert d.get("error", ex.error) == "UpstreamServerError"


class StateMachineRunner:
    """Stands in for StartSyncExecution, which moto does not implement: the same input the
    API function sends, walked through the real task handler by the interpreter."""

    def __init__(self, tasks, policy):
        self.tasks, self.policy, self.payloads = tasks, policy, []

    def run(self, payload, *, name=None):
        self.payloads.append((payload, name))
        asl = definition(self.policy, step_function_arn=FN_ARN)
        ex = Interpreter(asl, lambda arn, p: self.tasks(p)).run(payload)
        assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
        return ex.output


def test_api_runs_default_cascade_on_step_functions_when_deployed(gateway_factory, sim, tasks, services):
    from tests.cascade.conftest import CATALOG

    runner = StateMachineRunner(tasks, services.catalog.cascades["default"])
    url, _ = gateway_factory(CATALOG, parts={"remote_cascade": runner})
    sim.script("small-0", {"content": BROKEN_PY})
    sim.script("mid-1", {"content": GOOD_PY})
    r = httpx.post(url + "/v1/chat/completions", json={"model": "cascade", "messages": CODE_ASK})
    assert r.status_code == 200, r.text
    assert r.headers["x-tiergate-model"] == "mid" and r.headers["x-tiergate-cascade"].startswith("escalate;0:small")
    assert r.json()["choices"][0]["message"]["content"] == GOOD_PY
    (payload, name), = runner.payloads
    assert payload["request"]["messages"] == CODE_ASK and name == r.headers["x-request-id"]
    assert payload["principal"]["key_id"] == "local" and "policy" not in payload
    # Other policies run in process even when a state machine is deployed.
    sim.script("small-0", {"content": GOOD_PY})
    r = httpx.post(url + "/v1/chat/completions", json={"model": "cascade:refine", "messages": CODE_ASK})
    assert r.status_code == 200 and len(runner.payloads) == 1

"""The cascade on Step Functions: the generated ASL validates, the Lambda task handler runs
real steps (simulator behind the real Executor), and moto in server mode executes the
state machine along the paths the handler's outputs choose."""

from __future__ import annotations

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
from tests.support.moto_server import moto_config
from tiergate.admission import Principal
from tiergate.errors import RETRYABLE_ERROR_NAMES, InvalidRequest, UpstreamServerError
from tiergate.handlers.cascade import CascadeTasks
from tiergate.routing.cascade_steps import execution_input
from tiergate.routing.policy import CascadePolicy
from tiergate.routing.stepfunctions import definition

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
    assert answer["Retry"][0]["ErrorEquals"] == list(RETRYABLE_ERROR_NAMES)
    assert answer["Catch"][0]["Next"] == "HaveBest?"
    assert asl["States"]["Init"]["Parameters"]["policy"]["targets"] == list(policy.targets())
    assert ("WithinCeiling?" in asl["States"]) == (policy.max_cost_usd is not None)


def test_the_validator_catches_a_broken_definition():
    asl = definition(CascadePolicy(), step_function_arn=FN_ARN)
    asl["States"]["Escalate"]["Next"] = "Nowhere"
    assert lint(asl)


def test_parallel_policies_are_in_process_only():
    with pytest.raises(ValueError):
        definition(CascadePolicy(mode="parallel"), step_function_arn=FN_ARN)


# --- the task handler, driven along the ASL's data flow ---------------------------------


def initial_state(policy, name="default", body=None):
    init = definition(policy, step_function_arn=FN_ARN, policy_name=name)["States"]["Init"]["Parameters"]
    inp = execution_input(body or {"messages": CODE_ASK}, task_type="coding", principal=Principal(key_id="k"),
                          request_id="req-1")
    return {**inp, "policy": init["policy"], "cursor": init["cursor"]}, inp


def drive(tasks, state, *, fail_at=None):
    """Run the real handler the way the state machine routes it; returns (outputs, states entered)."""
    outputs, path = [], ["Init"]
    ceiling = state["policy"]["spec"]["max_cost_usd"]
    while True:
        path += ["Answer"]
        if fail_at == state["cursor"]["index"]:
            state = {**state, "error": {"Error": "Function.ResponseSizeTooLarge", "Cause": "too large"}}
            outputs.append("x" * 6_100_000)  # moto reports this Lambda result as a function error
            path += ["HaveBest?"]
            break
        cur = tasks({"step": "answer", "state": state})
        outputs.append(cur)
        state = {**state, "current": cur}
        path += ["AnswerResult", "Score"]
        cursor = tasks({"step": "score", "state": state})
        outputs.append(cursor)
        state = {**state, "cursor": cursor}
        path += ["ScoreResult", "Accept?"]
        if cursor["score"] >= cursor["threshold"]:
            break
        path += ["MoreSteps?"]
        if not cursor["has_next"]:
            break
        if ceiling is not None:
            path += ["WithinCeiling?"]
            if cursor["projected_usd"] > ceiling:
                break
        path += ["Escalate"]
        state = {**state, "cursor": {**cursor, "index": cursor["next_index"]}}
    path += ["Finish"]
    final = tasks({"step": "finish", "state": state})
    outputs.append(final)
    return outputs, path, final


@pytest.fixture
def tasks(services):
    t = CascadeTasks(services)
    yield t
    t.close()


def test_handler_answer_score_finish(tasks, sim):
    sim.script("small-0", {"content": BROKEN_PY})
    sim.script("mid-1", {"content": GOOD_PY})
    state, _ = initial_state(CascadePolicy(tiers=[0, 1, 2]))
    outputs, path, final = drive(tasks, state)
    assert path.count("Answer") == 2 and path[-2:] == ["Accept?", "Finish"]
    score0 = outputs[1]
    assert score0["score"] == 0.2 and score0["decision"]["action"] == "escalate" and score0["has_next"]
    assert final["model"] == "mid" and final["response"]["choices"][0]["message"]["content"] == GOOD_PY
    steps = final["response"]["tiergate_cascade"]["steps"]
    assert [s["status"] for s in steps] == ["rejected", "accepted"]
    assert final["header"].startswith("escalate;0:small=0.20:rejected;1:mid=1.00:accepted")


def test_handler_refine_uses_the_best_draft(tasks, sim):
    sim.script("small-0", {"content": BROKEN_PY})
    sim.script("big-2", {"content": GOOD_PY})
    state, _ = initial_state(CascadePolicy(mode="refine", models=["small", "big"]))
    _, _, final = drive(tasks, state)
    assert BROKEN_PY in sim.requests(model="big-2")[0]["body"]["messages"][-1]["content"]
    assert final["model"] == "big"


def test_handler_raises_gateway_error_classes(tasks, sim):
    sim.script("small-0", {"status": 500})
    state, _ = initial_state(CascadePolicy(tiers=[0, 1]))
    with pytest.raises(UpstreamServerError) as e:
        tasks({"step": "answer", "state": state})
    assert type(e.value).__name__ in RETRYABLE_ERROR_NAMES  # Step Functions' errorType -> Retry
    with pytest.raises(InvalidRequest):
        tasks({"step": "explode", "state": state})
    with pytest.raises(InvalidRequest):
        tasks({"step": "answer"})


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
           "test_moto_stops_at_the_ceiling": "eu-west-1", "test_moto_catch_returns_the_best_so_far": "eu-west-2",
           "test_moto_catch_without_an_answer_fails_with_the_error_name": "eu-central-1"}


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

    def run(policy, outputs, exec_input):
        asl = definition(policy, step_function_arn=fn["FunctionArn"])
        arn = sfn.create_state_machine(name=f"tg-cascade-{uuid.uuid4().hex[:8]}", definition=json.dumps(asl),
                                       roleArn=role, type="STANDARD")["stateMachineArn"]
        results = [o if isinstance(o, str) else json.dumps(o) for o in outputs]
        assert _post(f"{moto_server}/moto-api/static/lambda-simple/response",
                     {"results": results, "region": region}) == 201
        ex = sfn.start_execution(stateMachineArn=arn, name=f"run-{uuid.uuid4().hex}", input=json.dumps(exec_input))
        deadline = time.monotonic() + 30
        while (d := sfn.describe_execution(executionArn=ex["executionArn"]))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "execution did not finish"
            time.sleep(0.1)
        events = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=1000)["events"]
        entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        payloads = [json.loads(e["taskScheduledEventDetails"]["parameters"])["Payload"]
                    for e in events if "taskScheduledEventDetails" in e]
        return d, entered, payloads

    return run


def _check(d, entered, payloads, path, final):
    assert d["status"] == "SUCCEEDED", d
    assert entered == path
    assert json.loads(d["output"]) == json.loads(json.dumps(final))
    answers = [p["state"]["cursor"]["index"] for p in payloads if p["step"] == "answer"]
    assert answers == list(range(len(answers)))  # the escalate loop advanced one step at a time


def test_moto_accepts_at_tier_0(sfn, tasks, sim):
    sim.script("small-0", {"content": GOOD_PY})
    policy = CascadePolicy(tiers=[0, 1, 2])
    state, inp = initial_state(policy)
    outputs, path, final = drive(tasks, state)
    d, entered, payloads = sfn(policy, outputs, inp)
    _check(d, entered, payloads, path, final)
    assert entered == ["Init", "Answer", "AnswerResult", "Score", "ScoreResult", "Accept?", "Finish"]


def test_moto_escalates_twice(sfn, tasks, sim):
    sim.script("small-0", {"content": ""})
    sim.script("mid-1", {"content": BROKEN_PY})
    sim.script("big-2", {"content": GOOD_PY})
    policy = CascadePolicy(tiers=[0, 1, 2], max_cost_usd=1.0)
    state, inp = initial_state(policy)
    outputs, path, final = drive(tasks, state)
    d, entered, payloads = sfn(policy, outputs, inp)
    _check(d, entered, payloads, path, final)
    assert entered.count("Escalate") == 2 and entered.count("WithinCeiling?") == 2
    assert json.loads(d["output"])["model"] == "big"


def test_moto_stops_at_the_ceiling(sfn, tasks, sim):
    sim.script("small-0", {"content": BROKEN_PY})
    policy = CascadePolicy(tiers=[0, 1, 2], max_cost_usd=0.0001)
    state, inp = initial_state(policy)
    outputs, path, final = drive(tasks, state)
    d, entered, payloads = sfn(policy, outputs, inp)
    _check(d, entered, payloads, path, final)
    assert entered[-2:] == ["WithinCeiling?", "Finish"] and "Escalate" not in entered


def test_moto_catch_returns_the_best_so_far(sfn, tasks, sim):
    sim.script("small-0", {"content": BROKEN_PY})
    policy = CascadePolicy(tiers=[0, 1, 2])
    state, inp = initial_state(policy)
    outputs, path, final = drive(tasks, state, fail_at=1)
    d, entered, payloads = sfn(policy, outputs, inp)
    assert d["status"] == "SUCCEEDED" and entered == path
    assert entered[-3:] == ["Answer", "HaveBest?", "Finish"]
    out = json.loads(d["output"])
    assert out["model"] == "small" and "step failed" in out["response"]["tiergate_cascade"]["stop_reason"]


def test_moto_catch_without_an_answer_fails_with_the_error_name(sfn):
    policy = CascadePolicy(tiers=[0, 1])
    _, inp = initial_state(policy)
    d, entered, _ = sfn(policy, ["x" * 6_100_000], inp)
    assert d["status"] == "FAILED" and entered[-2:] == ["HaveBest?", "Failed"]


class StateMachineRunner:
    """Stands in for StartSyncExecution, which moto does not implement: the same input the
    API function sends, walked through the real task handler along the state machine's
    path (``drive``), and the Finish output returned as the execution's output."""

    def __init__(self, tasks, policy):
        self.tasks, self.policy, self.payloads = tasks, policy, []

    def run(self, payload, *, name=None):
        self.payloads.append((payload, name))
        init = definition(self.policy, step_function_arn=FN_ARN)["States"]["Init"]["Parameters"]
        _, _, final = drive(self.tasks, {**payload, "policy": init["policy"], "cursor": init["cursor"]})
        return final


def test_api_runs_default_cascade_on_step_functions_when_deployed(gateway_factory, sim, tasks):
    from tests.cascade.conftest import CATALOG

    url, app = gateway_factory(CATALOG, cascade_state_machine_arn="arn:aws:states:us-east-1:123456789012:"
                                                                   "stateMachine:tiergate-cascade")
    runner = StateMachineRunner(tasks, app.state.services.catalog.cascades["default"])
    app.state.services.extra["sfn_cascade"] = runner
    sim.script("small-0", {"content": BROKEN_PY})
    sim.script("mid-1", {"content": GOOD_PY})
    r = httpx.post(url + "/v1/chat/completions", json={"model": "cascade", "messages": CODE_ASK})
    assert r.status_code == 200, r.text
    assert r.headers["x-tiergate-model"] == "mid" and r.headers["x-tiergate-cascade"].startswith("escalate;0:small")
    assert r.json()["choices"][0]["message"]["content"] == GOOD_PY
    (payload, name), = runner.payloads
    assert payload["request"]["messages"] == CODE_ASK and name == r.headers["x-request-id"]
    # Other policies run in process even when a state machine is deployed.
    sim.script("small-0", {"content": GOOD_PY})
    r = httpx.post(url + "/v1/chat/completions", json={"model": "cascade:refine", "messages": CODE_ASK})
    assert r.status_code == 200 and len(runner.payloads) == 1

"""A small Amazon States Language interpreter for the subset the cascade definition uses.

It walks the *generated* definition (Pass with Parameters/InputPath/ResultPath, Task with
Parameters/ResultSelector/ResultPath/OutputPath/Retry/Catch, Choice, Fail) and invokes
Lambda tasks through a callable -- in the tests, the real cascade task handler. moto
executes the same definitions too, but cannot run our Lambda code; this runs it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Invoke = Callable[[str, dict[str, Any]], Any]


class _Missing:
    pass


MISSING = _Missing()


def get_path(data: Any, path: str) -> Any:
    if path == "$":
        return data
    assert path.startswith("$."), path
    cur = data
    for part in path[2:].split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def set_path(data: Any, path: str | None, value: Any) -> Any:
    if path is None or path == "$":
        return value
    out = copy.deepcopy(data) if isinstance(data, dict) else {}
    cur = out
    parts = path[2:].split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
    return out


def render(template: Any, data: Any) -> Any:
    """``Parameters``/``ResultSelector``: keys ending in ``.$`` take values from paths."""
    if isinstance(template, dict):
        out = {}
        for k, v in template.items():
            if k.endswith(".$"):
                got = get_path(data, v)
                if got is MISSING:
                    raise KeyError(f"path {v} not found")
                out[k[:-2]] = got
            else:
                out[k] = render(v, data)
        return out
    if isinstance(template, list):
        return [render(v, data) for v in template]
    return template


def _matches(names: list[str], error: str) -> bool:
    return "States.ALL" in names or error in names


def _choice(rule: dict[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(_choice(r, data) for r in rule["And"])
    value = get_path(data, rule["Variable"])
    if "IsPresent" in rule:
        return (value is not MISSING) == rule["IsPresent"]
    if "IsNull" in rule:
        return (value is None) == rule["IsNull"]
    if value is MISSING:
        return False
    if "StringEquals" in rule:
        return value == rule["StringEquals"]
    if "BooleanEquals" in rule:
        return value is rule["BooleanEquals"]
    if "NumericGreaterThanEqualsPath" in rule:
        return value >= get_path(data, rule["NumericGreaterThanEqualsPath"])
    if "NumericLessThanEquals" in rule:
        return value <= rule["NumericLessThanEquals"]
    raise NotImplementedError(rule)


@dataclass
class Execution:
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    path: list[str] = field(default_factory=list)
    #: Each Lambda invocation's result in order (a dict, or ``("error", name, cause)``).
    results: list[Any] = field(default_factory=list)
    #: Each Task state's final result after its retries (what another executor replays).
    outcomes: list[Any] = field(default_factory=list)


class Interpreter:
    def __init__(self, definition: dict[str, Any], invoke: Invoke, *, max_transitions: int = 500) -> None:
        self.d = definition
        self.invoke = invoke
        self.max = max_transitions

    def run(self, data: Any) -> Execution:
        ex = Execution("RUNNING")
        name = self.d["StartAt"]
        for _ in range(self.max):
            ex.path.append(name)
            st = self.d["States"][name]
            kind = st["Type"]
            if kind == "Pass":
                inp = get_path(data, st.get("InputPath", "$"))
                result = render(st["Parameters"], inp) if "Parameters" in st else inp
                data = set_path(data, st.get("ResultPath", "$"), result)
            elif kind == "Choice":
                nxt = next((r["Next"] for r in st["Choices"] if _choice(r, data)), st.get("Default"))
                name = nxt
                continue
            elif kind == "Fail":
                err = get_path(data, st["ErrorPath"]) if "ErrorPath" in st else st.get("Error")
                cause = get_path(data, st["CausePath"]) if "CausePath" in st else st.get("Cause")
                ex.status, ex.error, ex.cause = "FAILED", err, cause
                return ex
            elif kind == "Task":
                outcome = self._task(st, data, ex)
                if isinstance(outcome, tuple):  # caught
                    data, name = outcome
                    continue
                data = outcome
            else:
                raise NotImplementedError(kind)
            if st.get("End"):
                ex.status, ex.output = "SUCCEEDED", data
                return ex
            name = st["Next"]
        raise AssertionError("too many transitions")

    def _task(self, st: dict[str, Any], data: Any, ex: Execution) -> Any:
        params = render(st["Parameters"], data)
        tries = 0
        while True:
            tries += 1
            try:
                payload = self.invoke(params["FunctionName"], params["Payload"])
                # What a Lambda result crosses the service as: JSON.
                payload = json.loads(json.dumps(payload))
                ex.results.append(payload)
                ex.outcomes.append(payload)
                break
            except Exception as e:  # noqa: BLE001 - a Lambda function error
                name = type(e).__name__
                cause = json.dumps({"errorMessage": getattr(e, "message", str(e)), "errorType": name})
                ex.results.append(("error", name, cause))
                retry = next((r for r in st.get("Retry", ()) if _matches(r["ErrorEquals"], name)), None)
                if retry is not None and tries <= retry.get("MaxAttempts", 3):
                    continue
                ex.outcomes.append(("error", name, cause))
                catch = next((c for c in st.get("Catch", ()) if _matches(c["ErrorEquals"], name)), None)
                if catch is None:
                    raise
                return set_path(data, catch.get("ResultPath", "$"), {"Error": name, "Cause": cause}), catch["Next"]
        result: Any = {"Payload": payload, "StatusCode": 200}
        if "ResultSelector" in st:
            result = render(st["ResultSelector"], result)
        data = set_path(data, st.get("ResultPath", "$"), result)
        if "OutputPath" in st:
            data = get_path(data, st["OutputPath"])
        return data

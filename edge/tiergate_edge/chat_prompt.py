"""OpenAI chat bodies -> what a local model is asked, and its text -> OpenAI answers.

Pure functions (no llama_cpp): :func:`plan_chat` normalizes the messages for any GGUF
chat template (string contents, tool calls and tool results as text, a default system
prompt when the client sends none, system text folded into the first user turn for
formats that have no system role), and decides how the answer is constrained:

* ``json_object`` / ``json_schema``: a JSON schema (or any JSON) that grammar-constrained
  decoding enforces, so the answer always parses;
* tools: ``tool_choice`` = ``required`` or a named function forces a call, written
  ``<tool_call>[{"name": ..., "arguments": {...}}]</tool_call>`` (the tools are listed in
  the system prompt), its arguments constrained by the tool's JSON schema: any model.
  ``auto`` is the model's own decision when its GGUF chat template renders tools (Qwen
  2.5, Hermes, Llama 3.1 and the like were trained to decide): the tools go to the
  template, the model answers freely, and a call it writes is parsed (tagged, or bare
  JSON where the tags are special tokens the text leaves out). A template without tools
  (the bundled SmolLM2-135M: it never chose a call on its own when we measured) gets the
  keyword rule instead: a call is forced when the last user turn shares a content word
  with a tool's name, description or parameters, else the model answers freely and a
  call it writes is still parsed. After a tool result the model answers in words.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tiergate.errors import UpstreamBadRequest

#: Formats whose prompt has no system role (llama.cpp drops system messages for them).
NO_SYSTEM_ROLE = frozenset({"gemma"})
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
_TOOL_RE = re.compile(re.escape(TOOL_OPEN) + r"\s*(.*?)\s*(?:" + re.escape(TOOL_CLOSE) + r"|$)", re.S)

Mode = Literal["text", "json", "tools"]


@dataclass(frozen=True, slots=True)
class ChatPlan:
    messages: list[dict[str, str]]
    mode: Mode = "text"
    #: JSON schema the output must match (json mode: the client's; tools: the call list).
    schema: dict[str, Any] | None = None
    #: tools mode: True = the output must be a tool call (grammar); False = free text, parsed.
    force_call: bool = False
    tool_names: tuple[str, ...] = field(default=())
    #: tools mode, the model decides: the OpenAI ``tools`` for its own chat template to render.
    template_tools: tuple[dict[str, Any], ...] | None = None


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and p.get("type") in ("text", "input_text"):
                parts.append(str(p.get("text") or ""))
            elif isinstance(p, dict) and p.get("type") in ("image_url", "input_image", "input_audio"):
                raise UpstreamBadRequest("the local model reads text only (no images or audio)", param="messages")
        return "\n".join(parts)
    return str(content)


def _call_text(tool_calls: Sequence[Mapping[str, Any]]) -> str:
    calls = []
    for c in tool_calls:
        fn = c.get("function") or {}
        args = fn.get("arguments")
        try:
            parsed = json.loads(args) if isinstance(args, str) else (args or {})
        except ValueError:
            parsed = args
        calls.append({"name": fn.get("name"), "arguments": parsed})
    return TOOL_OPEN + json.dumps(calls) + TOOL_CLOSE


def normalize(messages: Sequence[Any]) -> list[dict[str, str]]:
    """Roles system/user/assistant and string contents only: what every chat template takes."""
    out: list[dict[str, str]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, to say which tool answered
    for m in messages:
        if not isinstance(m, Mapping):
            raise UpstreamBadRequest("each message must be an object", param="messages")
        role = m.get("role")
        content = _text(m.get("content"))
        if role == "developer":
            role = "system"
        if role == "assistant" and m.get("tool_calls"):
            content = (content + "\n" if content else "") + _call_text(m["tool_calls"])
            names.update({str(c.get("id")): str((c.get("function") or {}).get("name")) for c in m["tool_calls"]})
        elif role in ("tool", "function"):
            # Plain words work best: small models echo tags like <tool_response> back.
            name = m.get("name") or names.get(str(m.get("tool_call_id")), "the tool")
            role, content = "user", f"The tool {name} returned: {content}"
        elif role not in ("system", "user", "assistant"):
            raise UpstreamBadRequest(f"unsupported message role {role!r}", param="messages")
        out.append({"role": str(role), "content": content})
    return out


def _with_system(messages: list[dict[str, str]], extra: str, default_system: str | None) -> list[dict[str, str]]:
    """Append ``extra`` to the system message (creating one from the default if none)."""
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = (first["content"] + "\n\n" + extra).strip() if extra else first["content"]
        return [first, *messages[1:]]
    base = default_system or ""
    content = (base + "\n\n" + extra).strip() if extra else base
    return [{"role": "system", "content": content}, *messages] if content else messages


def fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """For formats with no system role: system text goes at the top of the first user turn."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
    rest = [m for m in messages if m["role"] != "system"]
    if not system:
        return rest
    for i, m in enumerate(rest):
        if m["role"] == "user":
            rest[i] = {"role": "user", "content": system + "\n\n" + m["content"]}
            return rest
    return [{"role": "user", "content": system}, *rest]


# --- tools ------------------------------------------------------------------------------

_STOP = frozenset("""a an and are as at be but by can could do does for from get give has have how i in is it
its me my of on or please should tell than that the their them then there these this to use was what when where
which who why will with would you your current""".split())


def _words(text: str) -> set[str]:
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9]{3,}", text.lower().replace("_", " ")) if w not in _STOP}


def _tool_words(fn: Mapping[str, Any]) -> set[str]:
    words = _words(str(fn.get("name") or "")) | _words(str(fn.get("description") or ""))
    props = ((fn.get("parameters") or {}).get("properties") or {})
    for name, p in props.items():
        words |= _words(str(name)) | _words(str((p or {}).get("description") or ""))
    return words


def _functions(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    fns = [t.get("function") for t in tools if isinstance(t, Mapping) and t.get("type", "function") == "function"]
    fns += list(body.get("functions") or [])  # the legacy form
    out = []
    for f in fns:
        if not isinstance(f, Mapping) or not f.get("name"):
            raise UpstreamBadRequest("each tool needs a function with a name", param="tools")
        out.append(dict(f))
    return out


def _tool_choice(body: Mapping[str, Any]) -> Any:
    choice = body.get("tool_choice")
    if choice is None and body.get("function_call") is not None:  # legacy
        fc = body["function_call"]
        choice = {"type": "function", "function": {"name": fc["name"]}} if isinstance(fc, Mapping) else fc
    return choice


def tools_system_text(fns: Sequence[Mapping[str, Any]]) -> str:
    listed = [{"name": f["name"], "description": f.get("description", ""),
               "parameters": f.get("parameters") or {"type": "object", "properties": {}}} for f in fns]
    return ("You can call these tools:\n<tools>" + json.dumps(listed) + "</tools>\n"
            "To call tools, reply with only " + TOOL_OPEN
            + '[{"name": "tool_name", "arguments": {"argument": "value"}}]' + TOOL_CLOSE
            + ". Otherwise answer the user directly.")


def calls_schema(fns: Sequence[Mapping[str, Any]], *, parallel: bool = True) -> dict[str, Any]:
    """The JSON schema of a list of calls to these functions (arguments per each one's schema)."""
    variants = []
    for f in fns:
        params = f.get("parameters") or {"type": "object", "properties": {}}
        variants.append({"type": "object", "properties": {"name": {"const": f["name"]}, "arguments": params},
                         "required": ["name", "arguments"], "additionalProperties": False})
    item = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {"type": "array", "items": item, "minItems": 1, "maxItems": 8 if parallel else 1}


def _about_a_tool(messages: Sequence[Mapping[str, str]], fns: Sequence[Mapping[str, Any]]) -> bool:
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    asked = _words(last_user)
    return any(asked & _tool_words(f) for f in fns)


def _plan_tools(body: Mapping[str, Any], messages: list[dict[str, str]], raw: Sequence[Any],
                default_system: str | None, template_tools: bool) -> ChatPlan | None:
    fns = _functions(body)
    choice = _tool_choice(body)
    if not fns or choice == "none":
        return None
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        chosen = [f for f in fns if f["name"] == name]
        if not chosen:
            raise UpstreamBadRequest(f"tool_choice names {name!r}, which is not among the tools", param="tool_choice")
        force, fns_for_call = True, chosen
    elif choice == "required":
        force, fns_for_call = True, fns
    elif choice in (None, "auto"):
        if isinstance(raw[-1], Mapping) and raw[-1].get("role") in ("tool", "function"):
            # A tool has answered: the model answers the user in words (without the tool list,
            # a small model would only call the tool again).
            return ChatPlan(_with_system(messages, "", default_system), mode="tools", tool_names=())
        if template_tools:  # the model's own template lists the tools; the model decides
            return ChatPlan(_with_system(messages, "", default_system), mode="tools",
                            tool_names=tuple(f["name"] for f in fns),
                            template_tools=tuple({"type": "function", "function": f} for f in fns))
        force, fns_for_call = _about_a_tool(messages, fns), fns
    else:
        raise UpstreamBadRequest("tool_choice must be none, auto, required or a function", param="tool_choice")
    msgs = _with_system(messages, tools_system_text(fns), default_system)
    schema = calls_schema(fns_for_call, parallel=body.get("parallel_tool_calls") is not False)
    return ChatPlan(msgs, mode="tools", schema=schema, force_call=force, tool_names=tuple(f["name"] for f in fns))


def _bare_calls(text: str) -> list[Any] | None:
    """The JSON values an answer consists of, one after another (``{...}\n{...}`` or a
    list), or None if it is anything else: a template model's calls once the special
    tokens around them are left out of the text."""
    dec, i, n, values = json.JSONDecoder(), 0, len(text), []
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            return values or None
        if text[i] not in "{[":
            return None
        try:
            v, i = dec.raw_decode(text, i)
        except ValueError:
            return None
        values += v if isinstance(v, list) else [v]


def parse_tool_calls(text: str, names: Sequence[str], *, bare: bool = False) -> tuple[str | None, list[dict[str, Any]]]:
    """Split a local answer into (content, tool_calls). Calls are the JSON inside each
    ``<tool_call>`` tag (a list, or one object per tag); with ``bare``, an answer made only
    of call objects counts too (a template that writes the tags as special tokens, which
    the text leaves out). A call must name a known tool and carry JSON arguments; anything
    else stays text."""
    tags = list(_TOOL_RE.finditer(text))
    calls: list[Any] = []
    if tags:
        for m in tags:
            try:
                v = json.loads(m.group(1))
            except ValueError:
                return text, []
            calls += v if isinstance(v, list) else [v]
        before = text[:tags[0].start()].strip()
    else:
        found = _bare_calls(text) if bare else None
        if not found or not all(isinstance(c, Mapping) and c.get("name") in names for c in found):
            return text, []
        calls, before = found, ""
    out, seen = [], set()
    for c in calls:
        if isinstance(c, Mapping) and c.get("name") in names:
            args = c.get("arguments", c.get("parameters", {}))
            if isinstance(args, str):  # some templates write the arguments as a JSON string
                try:
                    args = json.loads(args)
                except ValueError:
                    continue
            key = (c["name"], json.dumps(args, sort_keys=True))
            if key in seen:  # small models repeat a call; the same call twice is one call
                continue
            seen.add(key)
            out.append({"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(args if args is not None else {})}})
    if not out:
        return text, []
    return (before or None), out


# --- the plan ---------------------------------------------------------------------------


def plan_chat(body: Mapping[str, Any], *, default_system: str | None = None,
              chat_format: str | None = None, template_tools: bool = False) -> ChatPlan:
    """``template_tools``: the model's own chat template renders tools (``auto`` is its call)."""
    raw = body.get("messages") or []
    if not isinstance(raw, list) or not raw:
        raise UpstreamBadRequest("messages must be a non-empty list", param="messages")
    messages = normalize(raw)
    plan = _plan_tools(body, messages, raw, default_system, template_tools)
    if plan is None:
        plan = _plan_json(body, messages, default_system)
    if chat_format in NO_SYSTEM_ROLE:
        plan = ChatPlan(fold_system(plan.messages), plan.mode, plan.schema, plan.force_call, plan.tool_names,
                        plan.template_tools)
    return plan


def _plan_json(body: Mapping[str, Any], messages: list[dict[str, str]], default_system: str | None) -> ChatPlan:
    rf = body.get("response_format")
    kind = rf.get("type") if isinstance(rf, Mapping) else None
    if kind in (None, "text"):
        has_system = any(m["role"] == "system" for m in messages)
        return ChatPlan(messages if has_system else _with_system(messages, "", default_system))
    if kind == "json_object":
        schema = rf.get("schema")  # llama.cpp's extension; OpenAI sends none
        hint = "Respond only with a JSON object." if not schema else (
            "Respond only with a JSON object matching this JSON schema: " + json.dumps(schema))
        return ChatPlan(_with_system(messages, hint, default_system), mode="json", schema=schema)
    if kind == "json_schema":
        js = rf.get("json_schema") or {}
        schema = js.get("schema") if isinstance(js, Mapping) else None
        if not isinstance(schema, Mapping):
            raise UpstreamBadRequest("response_format.json_schema.schema must be a JSON schema object",
                                     param="response_format")
        hint = "Respond only with JSON matching this JSON schema: " + json.dumps(schema)
        return ChatPlan(_with_system(messages, hint, default_system), mode="json", schema=dict(schema))
    raise UpstreamBadRequest(f"unsupported response_format type {kind!r}", param="response_format")


def rename_root(gbnf: str, name: str) -> str:
    """A generated grammar's ``root`` rule under another name, to embed it in a bigger grammar."""
    return re.sub(r"^root(\s*::=)", name + r"\1", gbnf, count=1, flags=re.M)


def tool_call_grammar(calls_gbnf: str) -> str:
    """The grammar of a forced tool call: the tags around the call list's JSON."""
    return (rename_root(calls_gbnf, "calls") + "\n"
            + f'root ::= "{TOOL_OPEN}" calls "{TOOL_CLOSE}"\n')


def close_json(text: str) -> str:
    """Complete JSON that ``max_tokens`` cut off (grammar-constrained, so it is a valid
    prefix): cut back to the last point where every open value was complete, then close
    the open brackets. The answer still says ``finish_reason: length``; it parses."""
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    stack: list[list[str]] = []   # [closer, state]; state: key | colon | value | comma
    safe, safe_closers = 0, None  # the last cut point, and what closes the text there
    i, n = 0, len(text)

    def mark(pos: int) -> None:
        nonlocal safe, safe_closers
        safe, safe_closers = pos, "".join(c for c, _ in reversed(stack))

    def value_done(pos: int) -> None:
        if stack:
            stack[-1][1] = "comma"
            mark(pos)
        else:
            mark(pos)

    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        top = stack[-1] if stack else None
        if ch == '"':
            j, esc = i + 1, False
            while j < n and (esc or text[j] != '"'):
                esc = (not esc) and text[j] == "\\"
                j += 1
            if j >= n:
                break  # an open string: cut before it
            if top is not None and top[0] == "}" and top[1] == "key":
                top[1] = "colon"
            else:
                value_done(j + 1)
            i = j + 1
            continue
        if ch in "{[":
            if top is not None and top[0] == "}":
                top[1] = "comma"  # the container is this member's value
            stack.append(["}" if ch == "{" else "]", "key" if ch == "{" else "value"])
            mark(i + 1)
            i += 1
            continue
        if ch in "}]":
            if stack:
                stack.pop()
            value_done(i + 1)
            i += 1
            continue
        if ch == ":" and top is not None:
            top[1] = "value"
            i += 1
            continue
        if ch == "," and top is not None:
            top[1] = "key" if top[0] == "}" else "value"
            i += 1
            continue
        j = i  # a number or a literal: complete only when a delimiter follows
        while j < n and text[j] not in ",}] \t\r\n":
            j += 1
        if j >= n:
            break
        value_done(j)
        i = j
    if safe_closers is None:
        return "{}"
    cut = text[:safe].rstrip()
    return cut + safe_closers

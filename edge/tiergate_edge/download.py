"""Resumable model downloads over HTTP(S), verified by sha256, with a progress bar.

The file grows as ``<target>.partial``; an interrupted download resumes from its size
with a ``Range`` request (a server that ignores ranges answers 200 and we start over).
The hash covers the whole file, so a resumed download is hashed from the start of the
partial file. Only a verified file is renamed into place: a kill at any moment leaves
either the finished file or a partial one that the next run continues.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO

import httpx


class DownloadError(RuntimeError):
    """The download failed or the file does not match its expected sha256."""


def _hash_prefix(path: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h


def download(url: str, target: Path, *, sha256: str | None = None, progress: bool = True,
             stream: IO[str] | None = None, client: httpx.Client | None = None,
             timeout_s: float = 60.0, chunk: int = 1 << 16) -> Path:
    """Fetch ``url`` into ``target`` (resuming ``target.partial``); returns ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    have = partial.stat().st_size if partial.exists() else 0
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0), follow_redirects=True)
    try:
        headers = {"Range": f"bytes={have}-"} if have else {}
        with http.stream("GET", url, headers=headers) as r:
            if r.status_code == 416 and have:  # nothing left to fetch: the partial file is whole
                total = have
                h = _hash_prefix(partial)
            elif r.status_code in (200, 206):
                resumed = r.status_code == 206 and have > 0
                if not resumed:
                    have = 0
                h = _hash_prefix(partial) if resumed else hashlib.sha256()
                length = int(r.headers.get("content-length") or 0)
                total = have + length if length else 0
                _copy(r, partial, h, have=have, total=total, append=resumed, progress=progress,
                      stream=stream, name=target.name, chunk=chunk)
            else:
                raise DownloadError(f"GET {url}: HTTP {r.status_code}")
    except httpx.HTTPError as e:
        raise DownloadError(f"GET {url} failed: {e} (run the same command again to resume)") from None
    finally:
        if own:
            http.close()
    digest = h.hexdigest()
    if sha256 and digest != sha256.lower():
        partial.unlink(missing_ok=True)  # a wrong file is not worth resuming
        raise DownloadError(f"{url}: sha256 {digest} does not match the expected {sha256}")
    os.replace(partial, target)
    return target


def _copy(r: httpx.Response, partial: Path, h: hashlib._Hash, *, have: int, total: int, append: bool,
          progress: bool, stream: IO[str] | None, name: str, chunk: int) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total or None, initial=have, unit="B", unit_scale=True, desc=f"Downloading {name}",
                   file=stream)
    try:
        with partial.open("ab" if append else "wb") as f:
            for block in r.iter_bytes(chunk):
                f.write(block)
                h.update(block)
                if bar is not None:
                    bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    finally:
        if bar is not None:
            bar.close()

"""Private files for what the stores keep on disk: the directory 0700, each file 0600.

Budgets, usage records and key hashes are nobody else's business on a shared machine.
A file is created with its mode (never created readable and narrowed afterwards); one
that exists is narrowed. SQLite creates its ``-wal`` and ``-shm`` files with the mode of
the database file, so they follow.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) if missing; every directory this call creates is 0700."""
    p = Path(path)
    missing = []
    for d in (p, *p.parents):
        if d.exists():
            break
        missing.append(d)
    # Top-down, one at a time: ``mkdir(parents=True)`` gives the parents it makes the
    # umask's mode (0755), so a nested data dir would sit in a world-readable one.
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
            with contextlib.suppress(OSError):
                os.chmod(d, 0o700)  # mkdir's mode is masked by the umask
    return p


def private_file(path: str | Path) -> Path:
    """Create ``path`` as an empty 0600 file if missing (its directory private), and
    narrow an existing one to 0600."""
    p = Path(path)
    private_dir(p.parent)
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.chmod(p, 0o600)
    return p

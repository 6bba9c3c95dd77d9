"""Which processes sharing a SQLite file are alive: one lock file per process.

Every :class:`~tiergate.stores.sqlite.SqliteStore` process takes an exclusive ``flock``
on ``<db>.owners/<token>.lock`` for its life and stamps its token on the holds it makes.
The OS drops the lock on any exit, ``kill -9`` included, so "I can lock that file" means
"its owner is dead": a restarted gateway charges the dead owner's holds at once instead
of waiting for them to expire (see :mod:`tiergate.limits.orphans`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path

from tiergate.stores.files import private_dir


class ProcessLease:
    def __init__(self, directory: str | Path) -> None:
        self.dir = private_dir(directory)
        self.token = uuid.uuid4().hex[:16]
        self._path = self.dir / f"{self.token}.lock"
        self._fd: int | None = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def is_dead(self, token: str) -> bool:
        """True when no live process holds ``token``'s lock (or it never had a file)."""
        if token == self.token:
            return False
        path = self.dir / f"{token}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner still holds it
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        finally:
            os.close(fd)

    def forget(self, token: str) -> None:
        """Remove a dead owner's file (once it has no holds left)."""
        if token != self.token:
            with contextlib.suppress(OSError):
                (self.dir / f"{token}.lock").unlink()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
            os.close(self._fd)
            self._fd = None

"""The semantic cache's vector index: sqlite-vec in its own SQLite file, through APSW.

sqlite-vec's ``vec0`` virtual table holds each cached question's embedding with its
*scope* as the partition key (an exact hash of everything but the last user message:
a KNN query never looks outside it) and its guard signature's hash as a metadata column
(a hit query filters on it). ``sem_entries`` holds the rest: the question, its guard
tokens (to explain a near miss), the encoded answer, store and expiry times.

APSW, not the standard library's ``sqlite3``: CPython builds without loadable-extension
support are common (this project's own interpreter is one; so is macOS's), and APSW
ships its own SQLite that loads extensions. This is the only module importing ``apsw``
and ``sqlite_vec``. Calls are synchronous and are made from one worker thread
(:class:`tiergate.cache.semantic.SemanticCache` owns it).

Bounded: past ``max_entries`` the oldest entries are deleted (in batches of 10% of the
bound), and expired ones with them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tiergate.cache.semantic import Candidate

INSTALL_HINT = "pip install 'tiergate[semantic]' (apsw, sqlite-vec)"


def unavailable() -> str | None:
    for mod in ("apsw", "sqlite_vec"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed ({INSTALL_HINT})"
    return None


class SqliteVecIndex:
    kind = "sqlite-vec"

    def __init__(self, path: str | Path, *, dimensions: int) -> None:
        import apsw
        import sqlite_vec

        self.path = str(path)
        if self.path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = apsw.Connection(self.path)
        self._db.enable_load_extension(True)
        self._db.load_extension(sqlite_vec.loadable_path())
        self._db.enable_load_extension(False)
        self._db.set_busy_timeout(30_000)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS sem_vec USING vec0(scope TEXT PARTITION KEY, guard TEXT,"
            f" embedding FLOAT[{int(dimensions)}] distance_metric=cosine)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sem_entries (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, guard TEXT NOT NULL,"
            " question TEXT NOT NULL, tokens TEXT NOT NULL, body BLOB NOT NULL, stored_at REAL NOT NULL,"
            " expires_at REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS sem_entries_age ON sem_entries (stored_at)")
        self._db.execute("CREATE INDEX IF NOT EXISTS sem_entries_question ON sem_entries (scope, guard, question)")
        self.dimensions = dimensions

    def add(self, *, scope: str, guard: str, vector: Any, question: str, tokens: str, blob: bytes,
            stored_at: float, expires_at: float, max_entries: int) -> None:
        vec = _blob(vector)
        with self._db:  # one transaction: both tables or neither
            # A newer answer to the same question (a refresh) replaces the older one.
            for (old,) in self._db.execute("SELECT id FROM sem_entries WHERE scope = ? AND guard = ? AND question = ?",
                                           (scope, guard, question)).fetchall():
                self._db.execute("DELETE FROM sem_vec WHERE rowid = ?", (old,))
                self._db.execute("DELETE FROM sem_entries WHERE id = ?", (old,))
            self._db.execute("INSERT INTO sem_entries (scope, guard, question, tokens, body, stored_at, expires_at)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)", (scope, guard, question, tokens, blob, stored_at,
                                                                expires_at))
            rowid = self._db.last_insert_rowid()
            self._db.execute("INSERT INTO sem_vec (rowid, scope, guard, embedding) VALUES (?, ?, ?, ?)",
                             (rowid, scope, guard, vec))
            n = self._db.execute("SELECT COUNT(*) FROM sem_entries").fetchall()[0][0]
            if n > max_entries:
                self._evict(n - max_entries + max(1, max_entries // 10), stored_at)

    def _evict(self, count: int, now: float) -> None:
        rows = self._db.execute("SELECT id FROM sem_entries WHERE expires_at <= ? UNION "
                                "SELECT id FROM (SELECT id FROM sem_entries ORDER BY stored_at LIMIT ?)",
                                (now, count)).fetchall()
        for (rowid,) in rows:
            self._db.execute("DELETE FROM sem_vec WHERE rowid = ?", (rowid,))
            self._db.execute("DELETE FROM sem_entries WHERE id = ?", (rowid,))

    def nearest(self, scope: str, vector: Any, *, k: int, now: float, guard: str | None = None) -> list[Candidate]:
        sql = "SELECT rowid, distance FROM sem_vec WHERE embedding MATCH ? AND k = ? AND scope = ?"
        args: tuple[Any, ...] = (_blob(vector), k, scope)
        if guard is not None:
            sql += " AND guard = ?"
            args += (guard,)
        out = []
        for rowid, distance in self._db.execute(sql, args).fetchall():
            row = self._db.execute("SELECT guard, question, tokens, body, stored_at, expires_at FROM sem_entries"
                                   " WHERE id = ?", (rowid,)).fetchall()
            if row and row[0][5] > now:
                g, q, toks, body, stored_at, _ = row[0]
                out.append(Candidate(1.0 - float(distance), g, tuple(toks.split("\x1f")) if toks else (), q, body,
                                     stored_at))
        return out

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM sem_entries").fetchall()[0][0])

    def close(self) -> None:
        self._db.close()


def _blob(vector: Any) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float32).tobytes()

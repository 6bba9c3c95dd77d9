"""Regular expressions compiled on first use, not at import.

A module-level ``re.compile`` runs in every process that imports the module, whether or
not a request ever needs the pattern: the answer scorer's fifteen patterns (cascades only)
and the learned router's features cost a Lambda cold start ~6 ms of CPU before its first
response (``bench/cold_start``). :class:`LazyPattern` stands in for the compiled pattern:
its first ``search``/``findall``/... compiles it (through ``re``'s own cache) and puts the
compiled pattern's bound methods on the instance, so later calls cost what they did.
"""

from __future__ import annotations

import re
from typing import Any


class LazyPattern:
    """``re.compile(pattern, flags)`` on first use; then the compiled pattern's methods."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern, self.flags)

    def __getattr__(self, name: str) -> Any:
        # Only attributes the instance lacks get here: the first use of each method.
        value = getattr(self.compiled(), name)
        if callable(value):
            self.__dict__[name] = value
        return value

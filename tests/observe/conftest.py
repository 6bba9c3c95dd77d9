"""One gateway with known traffic per module (:mod:`tests.support.traffic`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.traffic import Served, known_traffic


@pytest.fixture(scope="module")
def served(upstream, tmp_path_factory) -> Iterator[Served]:
    upstream.reset()
    with known_traffic(tmp_path_factory.mktemp("dash"), upstream) as s:
        yield s

"""Pytest fixtures for the upstream simulator (see :mod:`tests.support.upstream`).

``upstream``: one simulator process for the whole session.
``sim``: the same :class:`~tests.support.upstream.UpstreamSim`, reset (scripts, defaults,
request log) before each test that uses it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.upstream import UpstreamSim


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamSim]:
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    sim = UpstreamSim.start(log_path=str(log))
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim(upstream: UpstreamSim) -> UpstreamSim:
    upstream.reset()
    return upstream

"""Fixtures shared by the whole test suite.

Real services come from the development package :mod:`devservices` (also used by the
benchmarks), as a pytest plugin: ``redis_server`` and ``postgres_server`` start a private server
once per session, the first time a test asks for one; ``redis_url`` and ``postgres_url`` hand
each test an empty database on it. Tests that use them are marked ``redis`` / ``postgresql``,
so ``-m "not postgresql"`` deselects them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from immortus import outbox

pytest_plugins = ("devservices.pytest_plugin",)


@pytest.fixture(autouse=True)
def no_outage_outlives_its_test() -> Iterator[None]:
    """Give up what a test left held for a store it took down, and end the replay thread.

    Otherwise the thread retries a dead store for the rest of the session, and its client's
    back-off draws from the global ``random`` state while Hypothesis tests generate data.
    """
    yield
    outbox.discard()

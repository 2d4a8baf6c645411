"""Fixtures shared by the whole test suite.

Real services come from the development package :mod:`devservices` (also used by the
benchmarks), as a pytest plugin: ``redis_server`` and ``postgres_server`` start a private server
once per session, the first time a test asks for one; ``redis_url`` and ``postgres_url`` hand
each test an empty database on it. Tests that use them are marked ``redis`` / ``postgresql``,
so ``-m "not postgresql"`` deselects them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from immortus import outbox

pytest_plugins = ("devservices.pytest_plugin",)

_SPOOL_ENV = "IMMORTUS_SPOOL_DIR"
_spool_key = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Give the run (and every worker process it starts) a spool folder of its own.

    Events held through a store outage are spooled to files that any later process using the
    same store takes over; outside a folder of its own, a test whose Redis got the port of an
    earlier run's would take over that run's events. Each pytest-xdist worker is a run of its
    own: it gets its own folder rather than sharing the controller's.
    """
    if _SPOOL_ENV not in os.environ or os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ[_SPOOL_ENV] = tempfile.mkdtemp(prefix="immortus-test-spool-")
        config.stash[_spool_key] = os.environ[_SPOOL_ENV]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's spool folder."""
    folder = config.stash.get(_spool_key, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(_SPOOL_ENV, None)


@pytest.fixture(autouse=True)
def no_outage_outlives_its_test() -> Iterator[None]:
    """Give up what a test left held for a store it took down, and end the replay thread.

    Otherwise the thread retries a dead store for the rest of the session, and its client's
    back-off draws from the global ``random`` state while Hypothesis tests generate data.
    """
    yield
    outbox.discard()


@pytest.fixture(autouse=True)
def alone_among_heavy_tests(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Run a test marked ``alone`` only while no other such test runs in another xdist worker.

    Those tests load both cores for a minute (1 000 HTTP connections, 32 writer processes):
    two at once starve each other's clients, whose timeouts then count as the server's errors.
    An exclusive lock on a file the workers share orders them; a one-process run needs none.
    """
    if request.node.get_closest_marker("alone") is None or "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    shared = tmp_path_factory.getbasetemp().parent  # every worker's base folder is inside it
    with open(shared / "alone.lock", "w") as lock:  # flock wants a file object
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield

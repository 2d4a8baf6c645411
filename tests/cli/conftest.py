"""Fixtures of the ``immortus`` command's tests: a pristine immortus, a store in ``tmp_path``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import immortus
from tests.cli.helpers import JOB_CLASS
from tests.support import pristine_immortus


@pytest.fixture(autouse=True)
def _pristine() -> Iterator[None]:
    with pristine_immortus():
        yield


@pytest.fixture
def url(tmp_path: Path) -> str:
    """An SQLite store in ``tmp_path``, configured in this process, with ``JOB_CLASS`` tracked."""
    store_url = f"sqlite:///{(tmp_path / 'jobs.sqlite3').as_posix()}"
    immortus.configure(store=store_url, progress_interval=0)
    immortus.get_store()  # the app has opened (and so created) its store

    @immortus.track(name=JOB_CLASS)
    def build() -> None: ...

    return store_url

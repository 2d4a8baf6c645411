"""The same job gets the same answer from every surface: Python, verify, batch, stream, CLI.

Each state a job can be in is made for real through the public tracking API on a real store,
then every surface is asked (:mod:`tests.surfaces`). Queue-specific runs of the same check live
with each queue's scenarios.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import immortus
from immortus import lifecycle
from immortus.exceptions import UntrackedJobClass
from immortus.transitions import utcnow
from immortus.web.core import Verifier
from tests.support import pristine_immortus
from tests.surfaces import (
    STABLE_KEYS,
    Style,
    answers,
    assert_one_answer,
    one_answer_in_every_style,
    reading_as,
)

CLASS = "surfaces.report"
KEY = "surfaces-test-key"  # a test's own signing key


@pytest.fixture(
    autouse=True,
    params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)],
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """The store every surface reads: an SQLite file (answers without waiting), or Redis."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    else:
        url = request.getfixturevalue("redis_url")
    with pristine_immortus():
        immortus.configure(store=url, progress_interval=0)
        immortus.declare(CLASS)
        yield


def _created() -> str:
    lifecycle.job_enqueued("job-created", CLASS)
    return "job-created"


def _finished() -> str:
    lifecycle.job_enqueued("job-finished", CLASS)
    with immortus.running("job-finished", CLASS):
        immortus.progress(3, 3, "done")
    return "job-finished"


def _import_rows() -> None:
    with immortus.running("job-failed", CLASS):
        immortus.progress(5, 10, "row 5")
        raise ValueError("row 6 is broken")


def _failed() -> str:
    lifecycle.job_enqueued("job-failed", CLASS)
    with pytest.raises(ValueError, match="row 6"):
        _import_rows()
    return "job-failed"


def _lost() -> str:
    """A worker started it, beat once, and was never heard of again: its lease lapsed."""
    lifecycle.job_enqueued("job-lost", CLASS)
    lifecycle.job_started("job-lost", CLASS, alive_until=utcnow() - timedelta(seconds=5))
    return "job-lost"


@pytest.mark.parametrize(
    "make",
    [_created, _finished, _failed, _lost],
    ids=["created", "finished", "failed", "lost"],
)
def test_a_settled_job_reads_alike_everywhere(make: object) -> None:
    assert callable(make)
    job_id = make()
    found = answers(job_id, CLASS)
    assert found["immortus.status"]["job_class"] == CLASS
    assert found["immortus.status"]["status"] == job_id.removeprefix("job-")
    assert_one_answer(found)
    one_answer_in_every_style(job_id, CLASS, in_store_style)


def in_store_style(job_id: str, job_class: str, style: Style) -> dict[str, dict[str, Any]]:
    """Every surface, the store strategy chosen the way of ``style``."""
    with reading_as(style, "store", job_class) as asked:
        return answers(job_id, asked)


def test_a_running_job_reads_alike_everywhere() -> None:
    lifecycle.job_enqueued("job-running", CLASS)
    release = threading.Event()
    reported = threading.Event()

    def work() -> None:
        with immortus.running("job-running", CLASS):
            immortus.progress(1, 4, "one")
            reported.set()
            release.wait(30)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert reported.wait(30)
        found = answers("job-running", CLASS)
        assert found["verify"]["status"] == "started"
        assert_one_answer(found, (*STABLE_KEYS, "progress", "started_at"))
        keys = (*STABLE_KEYS, "progress", "started_at")
        one_answer_in_every_style("job-running", CLASS, in_store_style, keys)
    finally:
        release.set()
        worker.join()


def test_an_unknown_job_reads_unknown_everywhere() -> None:
    found = answers("never-enqueued", CLASS)
    assert found["verify"]["status"] == "unknown"
    assert_one_answer(found)
    one_answer_in_every_style("never-enqueued", CLASS, in_store_style)


class GlobalStrategy:
    """A global strategy written as the Ruby gem immortus's docs show: completed() and meta()."""

    def completed(self, job_id: str) -> bool:
        return job_id.startswith("done-")

    def meta(self, job_id: str) -> dict[str, str]:
        return {"report_url": f"/reports/{job_id}"}


def test_an_untracked_class_under_a_global_strategy_is_answered_by_it_everywhere() -> None:
    immortus.configure(strategy=GlobalStrategy())
    found = answers("done-7", "FailJob")
    assert found["verify"]["status"] == "finished"
    assert found["verify"]["report_url"] == "/reports/done-7"
    assert_one_answer(found)


def test_an_untracked_class_without_a_global_strategy_is_refused_alike() -> None:
    with pytest.raises(UntrackedJobClass):
        immortus.status("job-1", "NotTracked")
    verifier = Verifier(secret_key=KEY)
    token = verifier.token_for("job-1", "NotTracked")
    reply = verifier.verify("job-1", "NotTracked", token)
    assert reply.status == 404
    assert reply.body["status"] == "unknown"

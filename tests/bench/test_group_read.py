"""The group-read benchmark works, so its figures cannot rot: one tiny run on a real Redis.

Both sides are seeded and read on the session's redis-server; both answers are checked (the
benchmark refuses to time wrong answers). Nothing here asserts a timing.
"""

from __future__ import annotations

import pytest

from bench.common import BenchError
from bench.stores.groups import _check, measure_size, render, seed_immortus
from immortus.grouping import GroupStatus


# Celery's Redis backend still calls redis-py's setex.
@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
def test_a_tiny_run_reads_both_sides_and_reports_them(redis_url: str) -> None:
    row = measure_size(redis_url, redis_url, 60, ((60,), 2, 3))
    assert (row["size"], row["celery_reads"], row["immortus_reads"]) == (60, 2, 6)
    assert row["immortus_p50_us"] > 0
    assert row["celery_p50_us"] > 0
    report = render([row], "redis test")
    assert "celery / immortus" in report
    assert "60" in report


def test_a_wrong_answer_is_refused(redis_url: str) -> None:
    store, group_id = seed_immortus(redis_url, 20)
    try:
        answer = store.group(group_id)
        assert isinstance(answer, GroupStatus)
        with pytest.raises(BenchError, match="Celery counted"):
            _check(answer, 20, 0)
        with pytest.raises(BenchError, match="the group read"):
            _check(answer, 21, 0)
    finally:
        store.close()

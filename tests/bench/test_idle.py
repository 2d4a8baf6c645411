"""The idle-processes benchmark works, so its figures cannot rot: one tiny run of each mode.

Real uvicorn processes over the session's redis-server; nothing here times anything, but an
idle process that polls must cost its store more operations than one that waits for push.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.idle.__main__ import measure, redis_operations, render
from tests.support import pristine_immortus

pytestmark = pytest.mark.slow


def test_one_idle_process_polling_and_pushed(redis_url: str, tmp_path: Path) -> None:
    plan = argparse.Namespace(window=1.0, writes=2)
    with redis_operations(redis_url) as operations, pristine_immortus():
        rows = [
            measure(
                1, push=push, store_url=redis_url, operations=operations, plan=plan, logs=tmp_path
            )
            for push in (False, True)
        ]
    polling, pushed = rows
    assert pushed["ops_per_s"] < polling["ops_per_s"]
    assert all(row["latency_p95_ms"] >= row["latency_p50_ms"] >= 0 for row in rows)
    assert "processes" in render("redis", rows)

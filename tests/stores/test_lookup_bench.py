"""The store lookup benchmark measures its floor and says where a target is out of reach.

One tiny run on a real SQLite file (every answer checked by the benchmark itself), and the
report's verdicts from given figures. Nothing here asserts a timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.stores.backends import SQLiteBackend
from bench.stores.dataset import Dataset
from bench.stores.lookup import SEED, measure_store, render


def test_a_tiny_run_times_the_floor_beside_the_store(tmp_path: Path) -> None:
    figures = measure_store(SQLiteBackend(tmp_path), Dataset(200, SEED), lookups=60, warmup=10)
    for label in ("store", "bare key", "bare row", "floor"):
        assert figures[label]["samples"] == 60
        assert figures[label]["p50_us"] > 0
    assert figures["row_limit_p50"] == pytest.approx(
        figures["bare row"]["p50_us"] / figures["floor"]["p50_us"]
    )
    report = render({"sqlite": figures}, 200)
    assert "floor" in report
    assert not list(tmp_path.iterdir())  # the benchmark removed its file


def _figures(store: float, key: float, row: float, floor: float) -> dict[str, Any]:
    times = {"store": store, "bare key": key, "bare row": row, "floor": floor}
    figures: dict[str, Any] = {
        label: {"samples": 1, "p50_us": p50, "p99_us": p50} for label, p50 in times.items()
    }
    polled = {label: {"samples": 1, "p50_us": p50, "p99_us": p50} for label, p50 in times.items()}
    return {
        **figures,
        "bare_key": "SELECT 1",
        "ratio_p50": key / store,
        "ratio_p99": key / store,
        "row_ratio_p50": row / store,
        "limit_p50": key / row,
        "row_limit_p50": row / floor,
        "polled": {**polled, "ratio_p50": key / store, "row_ratio_p50": row / store},
    }


@pytest.mark.parametrize(
    ("times", "verdicts"),
    [
        ((10, 8, 9, 9.5), ["PASS", "PASS"]),  # both ratios at least 0.7
        ((20, 8, 9, 10), ["MISS", "MISS"]),  # below, though a leaner store could reach it
        ((20, 4, 9, 18), ["LIMIT", "LIMIT"]),  # below even at the limits: out of reach
    ],
)
def test_each_ratio_has_its_verdict_beside_its_limit(
    times: tuple[float, float, float, float], verdicts: list[str]
) -> None:
    line = next(
        line
        for line in render({"sqlite": _figures(*times)}, 10).splitlines()
        if line.startswith("sqlite") and "|" in line and line.count("|") > 5
    )
    assert [word for word in line.split() if word in {"PASS", "MISS", "LIMIT"}] == verdicts

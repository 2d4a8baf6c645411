"""``make bench`` runs every benchmark: none is forgotten, none is listed that does not exist."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench import all as bench_all

BENCH = Path(bench_all.__file__).resolve().parent


def _benchmarks() -> set[str]:
    """The bench modules that run on their own and save figures (not a benchmark's helpers)."""
    names = set()
    for path in BENCH.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        runnable = any(
            isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
            for node in ast.parse(source).body
        )
        if runnable and "bench.results" in source:
            names.add(path.stem)
    return names


def test_every_runnable_benchmark_is_run_by_make_bench() -> None:
    assert _benchmarks() - {"all"} == set(bench_all.BENCHMARKS)


def test_an_unknown_benchmark_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench_all.parse_arguments(["--only", "store_scaling,nope"])
    assert stopped.value.code == 2
    assert "unknown benchmark(s): nope" in capsys.readouterr().err


def test_a_failing_benchmark_fails_the_run_without_stopping_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[str] = []

    def fake_run(name: str, *, full: bool) -> bench_all.Outcome:
        ran.append(name)
        return bench_all.Outcome(name, 1 if name == "store_scaling" else 0, 0.0)

    monkeypatch.setattr(bench_all, "run", fake_run)
    assert bench_all.main(["--only", "store_scaling,store_lookup"]) == 1
    assert ran == ["store_scaling", "store_lookup"]

"""``make bench`` runs every benchmark: none is forgotten, none is listed that does not exist."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from bench import all as bench_all

BENCH = Path(bench_all.__file__).resolve().parent
#: One-off comparisons, kept apart from what ``make bench`` runs.
STUDIES = BENCH / "studies"


def _module_name(path: Path) -> str:
    """``bench/verify/__main__.py`` is ``bench.verify``; ``bench/stores/lookup.py`` is itself."""
    parts = path.relative_to(BENCH.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__main__" else parts)


def _benchmarks() -> set[str]:
    """The modules under ``bench/`` that run on their own in ``--quick`` and ``--full`` mode.

    A benchmark's helpers (its servers' apps, the processes it spawns) run on their own too,
    but take no mode.
    """
    names = set()
    for path in BENCH.rglob("*.py"):
        if path.is_relative_to(STUDIES):
            continue
        source = path.read_text(encoding="utf-8")
        runnable = any(
            isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
            for node in ast.parse(source).body
        )
        if runnable and ("add_modes(" in source or '"--full"' in source):
            names.add(_module_name(path))
    return names


def test_every_runnable_benchmark_is_run_by_make_bench() -> None:
    assert _benchmarks() - {"bench.all"} == set(bench_all.BENCHMARKS.values())


def test_benchmarks_in_packages_are_found() -> None:
    # The search looks inside the packages, where the benchmarks live, not only at the top.
    assert {"bench.verify", "bench.stores.lookup", "bench.load"} <= _benchmarks()


@pytest.mark.parametrize("module", sorted(bench_all.BENCHMARKS.values()))
def test_every_listed_benchmark_can_be_run_with_python_dash_m(module: str) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None


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

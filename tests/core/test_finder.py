from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import immortus
from immortus import JobStatus, State, StoreStrategy, TrackingStrategy, finder
from immortus.exceptions import StrategyNotFound


class Named(TrackingStrategy):
    def __init__(self, name: str = "default") -> None:
        self.name = name

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id=job_id, state=State.CREATED, meta={"by": self.name})


def test_resolution_order_inline_then_global_then_inferred() -> None:
    immortus.configure(store="memory://")

    @immortus.track(name="jobs.inline", strategy=Named("inline"))
    def inline() -> None: ...

    @immortus.track(name="jobs.plain")
    def plain() -> None: ...

    assert isinstance(immortus.find_strategy("jobs.plain"), StoreStrategy)  # inferred
    assert isinstance(immortus.find_strategy(None), StoreStrategy)
    immortus.configure(strategy=Named("global"))
    assert immortus.status("j", "jobs.plain").meta == {"by": "global"}
    assert immortus.status("j", "jobs.inline").meta == {"by": "inline"}
    assert immortus.status("j").meta == {"by": "global"}


def test_inferred_from_the_queue_the_job_declares() -> None:
    immortus.register_strategy("somequeue", Named("queue"))

    @immortus.track(name="jobs.queued", queue="somequeue")
    def queued() -> None: ...

    assert immortus.status("j", "jobs.queued").meta == {"by": "queue"}


def test_nothing_found_lists_every_step_tried() -> None:
    immortus.configure(store=None)

    @immortus.track(name="jobs.orphan")
    def orphan() -> None: ...

    with pytest.raises(StrategyNotFound) as caught:
        immortus.find_strategy("jobs.orphan")
    message = str(caught.value)
    assert "job class 'jobs.orphan'" in message
    assert "inline: 'jobs.orphan' declares no strategy" in message
    assert "global: no strategy configured" in message
    assert "store tracking is disabled" in message
    assert len(caught.value.tried) == 3


def test_names_resolve_through_registry_builtins_and_import_paths() -> None:
    immortus.register_strategy("mine", Named)
    assert isinstance(immortus.resolve_strategy("mine"), Named)
    assert isinstance(immortus.resolve_strategy("store"), StoreStrategy)
    assert isinstance(immortus.resolve_strategy("tests.core.test_finder:Named"), Named)
    assert isinstance(immortus.resolve_strategy("tests.core.test_finder.Named"), Named)
    immortus.register_strategy("alias", "tests.core.test_finder:Named")
    assert isinstance(immortus.resolve_strategy("alias"), Named)
    instance = Named("x")
    assert immortus.resolve_strategy(instance) is instance
    assert immortus.resolve_strategy("mine") is immortus.resolve_strategy("mine")  # cached


def test_unresolvable_names_say_what_was_tried() -> None:
    with pytest.raises(StrategyNotFound) as caught:
        immortus.resolve_strategy("nosuch")
    assert [place.split(":")[0] for place in caught.value.tried] == [
        "registered strategies",
        "built-in strategies",
        "entry points in group 'immortus.strategies'",
        "import path",
    ]
    with pytest.raises(StrategyNotFound, match="No module named 'no_such_module'") as imported:
        immortus.resolve_strategy("no_such_module:Thing")
    assert isinstance(imported.value.__cause__, ImportError)
    with pytest.raises(StrategyNotFound, match="has no attribute 'Missing'"):
        immortus.resolve_strategy("tests.core.test_finder:Missing")


def test_entry_points_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plugin_strategy.py").write_text(
        textwrap.dedent(
            """
            from immortus import JobStatus, State, TrackingStrategy

            class PluginStrategy(TrackingStrategy):
                def status(self, job_id):
                    return JobStatus(job_id=job_id, state=State.FINISHED, meta={"by": "plugin"})
            """
        )
    )
    dist = tmp_path / "immortus_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: immortus-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[immortus.strategies]\nplugin = plugin_strategy:PluginStrategy\n"
        "broken = no_such_plugin_module:X\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    immortus.configure(strategy="plugin")
    assert immortus.status("j").to_dict()["by"] == "plugin"
    with pytest.raises(StrategyNotFound, match="no_such_plugin_module"):
        immortus.resolve_strategy("broken")


def test_registering_and_configuring_empty_the_caches() -> None:
    immortus.register_strategy("swap", Named("first"))
    immortus.configure(strategy="swap")
    assert immortus.status("j").meta == {"by": "first"}
    immortus.register_strategy("swap", Named("second"))
    assert immortus.status("j").meta == {"by": "second"}


def test_names_from_outside_never_grow_the_cache() -> None:
    immortus.configure(store="memory://")
    for index in range(50):
        immortus.find_strategy(f"random.name{index}")
    assert len(finder._by_job_class) == 1

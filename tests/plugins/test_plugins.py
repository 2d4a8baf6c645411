"""A store and a queue strategy from another package plug in without editing immortus.

``tests/plugins/site`` holds a package, ``immortus_thirdparty``, with the metadata ``pip
install`` would write for it: its entry points offer a store for ``ledger://`` URLs (group
``immortus.stores``) and a strategy named ``ledger_queue`` (group ``immortus.strategies``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import immortus
from immortus import lifecycle
from immortus.exceptions import InvalidStoreURL
from immortus.stores import open_store
from tests.support import pristine_immortus

SITE = Path(__file__).with_name("site")


@pytest.fixture(autouse=True)
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(SITE))
    with pristine_immortus():
        yield


def test_a_store_of_another_package_opens_by_its_scheme() -> None:
    thirdparty = importlib.import_module("immortus_thirdparty")  # not on mypy's path
    immortus.configure(store="ledger://books")
    immortus.declare("ledger.report")
    lifecycle.job_enqueued("j-1", "ledger.report")
    with immortus.running("j-1", "ledger.report"):
        immortus.progress(1, 2)
    assert isinstance(immortus.get_store(), thirdparty.LedgerStore)
    assert immortus.status("j-1", "ledger.report").state == "finished"
    assert thirdparty.LEDGERS["books"].get("j-1") is not None


def test_a_strategy_of_another_package_is_inferred_for_its_queue() -> None:
    immortus.declare("ledger.sync", queue="ledger_queue")
    assert immortus.status("sync-done", "ledger.sync").state == "finished"
    assert immortus.status("sync-9", "ledger.sync").state == "started"


def test_an_unknown_scheme_names_where_stores_come_from() -> None:
    with pytest.raises(InvalidStoreURL, match=r"entry-point group 'immortus\.stores'"):
        open_store("nosuch://x")


def test_an_entry_point_that_is_no_store_is_refused() -> None:
    with pytest.raises(InvalidStoreURL, match="not a Store subclass"):
        open_store("notastore://x")

"""``immortus group GROUP_ID``: a group's aggregate, from the store a worker filled."""

from __future__ import annotations

import json

import pytest

import immortus
from tests.cli.helpers import failed, finished, run, started


def fill(group_id: str) -> None:
    with immortus.group(group_id):
        started("a")
        finished("b")
        failed("c", "row 7\x1b[31m is empty")


def test_group_prints_its_aggregate_on_one_line(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fill("nightly")
    code, out, _ = run(capsys, "--store", url, "group", "nightly")
    assert code == 0
    assert out.startswith("nightly  started  2/3 completed  79.0%  ")
    assert "started 1" in out
    assert "finished 1" in out
    assert "failed 1" in out
    assert "first error ValueError: row 7\\x1b[31m is empty" in out  # inert


def test_group_json_is_the_group_body(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    fill("nightly")
    code, out, _ = run(capsys, "--store", url, "group", "nightly", "--json")
    body = json.loads(out)
    assert code == 0
    assert body == immortus.group_status("nightly").to_dict()
    assert (body["status"], body["total"], body["completed"]) == ("started", 3, 2)
    assert body["error"] == {"type": "ValueError", "message": "row 7\x1b[31m is empty"}


def test_an_unknown_group_exits_1(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", url, "group", "nobody")
    assert code == 1
    assert out == "nobody  unknown: no job of this group is recorded\n"


def test_a_malformed_group_id_is_a_usage_error(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--store", url, "group", " padded")
    assert code == 2
    assert "group id" in err

"""``immortus config``: the settings in force, after ``--app`` and the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from immortus import registry
from immortus.cli.app import APP_ENV
from immortus.config import STORE_ENV
from tests.cli.helpers import JOB_CLASS, run

SIGNING = "tokens-are-signed-with-this"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory, no store, app or tracked job; app modules forgotten.

    Jobs that other test modules declared at import time are put back afterwards.
    """
    registry.clear()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv(STORE_ENV, raising=False)
    monkeypatch.delenv(APP_ENV, raising=False)
    yield tmp_path
    sys.modules.pop("settings_app", None)


def test_the_default_store_is_shown_with_its_absolute_path(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "config")
    assert (code, err) == (0, "")
    lines = dict(line.split(maxsplit=1) for line in out.splitlines() if line[:1] != " ")
    expected = f"sqlite:///{workdir / 'immortus.sqlite3'}  (from the default, no file yet)"
    assert lines["store"] == expected
    assert lines["app"].startswith("none")
    assert not (workdir / "immortus.sqlite3").exists()  # named, never opened
    settings = json.loads(run(capsys, "config", "--json")[1])
    assert settings["store"] == f"sqlite:///{workdir / 'immortus.sqlite3'}"
    assert (settings["store_from"], settings["store_file_exists"]) == ("the default", False)
    assert (settings["secret_key_set"], settings["jobs"]) == (False, {})


def test_the_app_s_settings_and_jobs_are_shown_and_the_key_is_not(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "settings_app.py").write_text(
        "import immortus\n"
        "immortus.configure(store='postgresql://app:pw-123@db.internal/jobs', "
        f"secret_key={SIGNING!r}, strategy='store', heartbeat_interval=None, ttl=3600)\n"
        f"@immortus.track(name={JOB_CLASS!r}, queue='huey')\n"
        "def build(): ...\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "--app", "settings_app", "config")
    assert (code, err) == (0, "")
    assert SIGNING not in out
    assert "pw-123" not in out
    for line in (
        "app                settings_app",
        "store              postgresql://app:***@db.internal/jobs  (from the app)",
        "strategy           store  (from the app)",
        "secret key         set",
        "heartbeat interval off",
        "ttl                3600 s",
        f"job classes        {JOB_CLASS}  (queue huey)",
    ):
        assert line in out.splitlines()
    code, out, _ = run(capsys, "--app", "settings_app", "config", "--json")
    settings = json.loads(out)
    assert SIGNING not in out
    assert settings["secret_key_set"] is True
    assert settings["jobs"] == {JOB_CLASS: {"queue": "huey", "strategy": None}}
    assert (settings["heartbeat_interval"], settings["ttl"]) == (None, 3600)


def test_the_command_line_wins_and_says_so(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "settings_app.py").write_text(
        "import immortus\nimmortus.configure(store='redis://:pw-123@cache/0', strategy='store')\n",
        encoding="utf-8",
    )
    argv = ["--app", "settings_app", "--store", "memory://", "--strategy", "huey"]
    code, out, err = run(capsys, *argv, "config", "--json")
    assert code == 0
    settings = json.loads(out)
    assert (settings["store"], settings["store_from"]) == ("memory://", "--store")
    assert (settings["strategy"], settings["strategy_from"]) == ("huey", "--strategy")
    assert err.splitlines() == [
        "immortus: --store replaces the store the app uses (redis://:***@cache/0)",
        "immortus: --strategy replaces the app's global strategy ('store')",
    ]


@pytest.mark.parametrize(
    "store",
    [
        "u:pw-123@db.internal/jobs",
        "postgresql://u:pw-123@db.internal/jobs",
        "redis://:pw-123@cache:6379/0?password=pw-123",
    ],
)
def test_config_never_prints_a_store_password(
    workdir: Path, capsys: pytest.CaptureFixture[str], store: str
) -> None:
    for extra in ([], ["--json"]):
        code, out, err = run(capsys, "--store", store, "config", *extra)
        assert code == 0
        assert "pw-123" not in out + err
        assert "***" in out

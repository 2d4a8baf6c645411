"""``--app``: the command imports the user's app and resolves strategies exactly as it does.

Each app is a module written to ``tmp_path`` (the working directory, as for ``celery -A``),
imported in this process by ``main`` and forgotten after the test; the Django case runs in a
fresh interpreter, since Django sets itself up once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from immortus.cli import main
from immortus.cli.app import APP_ENV
from immortus.config import STORE_ENV
from tests.cli.helpers import SRC, WAIT, finished, run

#: A custom strategy as the Ruby gem immortus wrote them (only ``completed``): every job whose
#: id starts with "oracle-" has finished.
ORACLE = """
import immortus

class Oracle:
    def completed(self, job_id):
        return job_id.startswith("oracle-")
"""

AppWriter = Callable[[str, str], str]


@pytest.fixture
def write_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppWriter]:
    """Write ``name.py`` with ``source`` to the working directory; return the module name.

    The modules it imports and the entries it puts on ``sys.path`` are forgotten afterwards.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in {"", "."}])
    monkeypatch.delenv(APP_ENV, raising=False)
    monkeypatch.delenv(STORE_ENV, raising=False)
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_the_app_s_global_strategy_answers(
    url: str, write_app: AppWriter, capsys: pytest.CaptureFixture[str]
) -> None:
    app = write_app("oracle_app", ORACLE + "immortus.configure(strategy=Oracle())\n")
    code, out, _ = run(capsys, "--store", url, "status", "oracle-7")
    assert (code, out.split()[:2]) == (1, ["oracle-7", "unknown:"])  # without the app
    code, out, err = run(capsys, "--app", app, "--store", url, "status", "oracle-7")
    assert (code, err) == (0, "")
    assert out.split()[:3] == ["oracle-7", "-", "finished"]
    code, out, _ = run(capsys, "--store", url, "status", "--app", app, "oracle-7", "--json")
    assert (code, json.loads(out)["status"]) == (0, "finished")  # --app after the command too


def test_a_job_the_app_s_strategy_answers_needs_no_store_file(
    write_app: AppWriter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    app = write_app("no_store_app", ORACLE + "immortus.configure(strategy=Oracle())\n")
    code, _, err = run(capsys, "status", "oracle-1")  # the store strategy: the file is needed
    assert code == 2
    assert f"no immortus store at {tmp_path / 'immortus.sqlite3'}" in err
    code, out, err = run(capsys, "--app", app, "status", "oracle-1")
    assert (code, err) == (0, "")
    assert "finished" in out
    assert not (tmp_path / "immortus.sqlite3").exists()


def test_the_app_comes_from_the_environment(
    url: str,
    write_app: AppWriter,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = write_app("env_app", ORACLE + "immortus.configure(strategy=Oracle())\n")
    monkeypatch.setenv(APP_ENV, app)
    assert run(capsys, "--store", url, "status", "oracle-1")[0] == 0


def test_an_attribute_and_a_factory(
    url: str, write_app: AppWriter, capsys: pytest.CaptureFixture[str]
) -> None:
    app = write_app(
        "factory_app",
        ORACLE + "def create_app():\n    immortus.configure(strategy=Oracle())\n",
    )
    assert run(capsys, "--app", f"{app}:create_app", "--store", url, "status", "oracle-1")[0] == 1
    assert run(capsys, "--app", f"{app}:create_app()", "--store", url, "status", "oracle-1")[0] == 0


def test_the_app_s_store_is_used_unless_store_is_given(
    url: str, write_app: AppWriter, capsys: pytest.CaptureFixture[str]
) -> None:
    finished("job-1")
    app = write_app(
        "store_app",
        f"""
        import immortus
        immortus.configure(store={url!r})
        """,
    )
    code, out, err = run(capsys, "--app", app, "status", "job-1")
    assert (code, err) == (0, "")
    assert "finished" in out
    unreachable = "redis://worker:s3cret@127.0.0.1:1/0"
    app = write_app("secret_app", f"import immortus\nimmortus.configure(store={unreachable!r})\n")
    assert run(capsys, "--app", app, "status", "job-1")[0] == 3
    code, out, err = run(capsys, "--app", app, "--store", url, "status", "job-1")
    assert code == 0
    assert "finished" in out
    assert err == (
        "immortus: --store replaces the store the app uses (redis://worker:***@127.0.0.1:1/0)\n"
    )


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        (None, "no_such_app", "cannot load the app 'no_such_app': ModuleNotFoundError: No module"),
        ("x = 1\n", "{app}:missing", "cannot load the app '{app}:missing': {app} has no 'missing'"),
        (
            "raise RuntimeError('settings are broken')\n",
            "{app}",
            "cannot load the app '{app}': RuntimeError: settings are broken",
        ),
        ("import sys\nsys.exit(3)\n", "{app}", "cannot load the app '{app}': SystemExit: 3"),
        (
            "def make():\n    raise KeyError('db')\n",
            "{app}:make()",
            "cannot load the app '{app}:make()': KeyError: 'db'",
        ),
    ],
)
def test_an_app_that_cannot_be_loaded_exits_2(
    url: str,
    write_app: AppWriter,
    capsys: pytest.CaptureFixture[str],
    *,
    source: str | None,
    spec: str,
    message: str,
) -> None:
    name = write_app(f"broken_app_{abs(hash(spec)) % 10_000}", source) if source else ""
    spec, message = spec.format(app=name), message.format(app=name)
    code, out, err = run(capsys, "--app", spec, "--store", url, "status", "job-1")
    assert (code, out) == (2, "")
    assert err.startswith(f"immortus: {message}")
    assert err.count("\n") == 1


def test_debug_prints_the_traceback_behind_the_message(
    url: str, write_app: AppWriter, capsys: pytest.CaptureFixture[str]
) -> None:
    app = write_app("raising_app", "def boom():\n    raise RuntimeError('broken')\nboom()\n")
    code = main(["--debug", "--app", app, "--store", url, "status", "job-1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.index("Traceback") < err.index("raise RuntimeError('broken')")
    last = err.rstrip("\n").splitlines()[-1]
    assert last == f"immortus: cannot load the app {app!r}: RuntimeError: broken"


def test_demo_takes_no_app(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--app", "anything", "demo", "--smoke")
    assert code == 2
    assert "demo runs its own sample app" in err


def test_a_django_settings_module_sets_up_django(tmp_path: Path, url: str) -> None:
    """Named by ``--app`` or ``--django-settings``, the settings run the app's ``IMMORTUS``."""
    (tmp_path / "site_settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "not-a-secret-for-tests"
            INSTALLED_APPS = ["immortus.web.django"]
            IMMORTUS = {{"store": {url!r}, "open_endpoints": True}}
            """
        ),
        encoding="utf-8",
    )
    finished("job-1")
    env = {**os.environ, "PYTHONPATH": SRC}
    for variable in (STORE_ENV, APP_ENV, "DJANGO_SETTINGS_MODULE"):
        env.pop(variable, None)
    for option in ("--app", "--django-settings"):
        command = [sys.executable, "-m", "immortus", option, "site_settings"]
        result = subprocess.run(
            [*command, "config", "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=WAIT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        settings = json.loads(result.stdout)
        assert settings["store"] == url
        assert settings["open_endpoints"] is True
        assert settings["store_from"] == "the app"
        result = subprocess.run(
            [*command, "status", "job-1"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=WAIT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "finished" in result.stdout

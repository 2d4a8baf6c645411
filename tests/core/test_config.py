from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

import immortus
from immortus import config, lifecycle
from immortus.exceptions import ConfigurationError, InvalidStoreURL, MissingDependency
from immortus.stores import open_store
from immortus.stores.memory import MemoryStore


def test_defaults() -> None:
    settings = immortus.get_config()
    assert settings.store == "sqlite:///immortus.sqlite3"
    assert settings.strategy is None
    assert settings.progress_interval == 0.2


def test_store_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMMORTUS_STORE", "memory://")
    config.reset()
    assert immortus.get_config().store == "memory://"
    assert isinstance(immortus.get_store(), MemoryStore)


def test_unknown_and_bad_settings_are_refused_without_changing_anything() -> None:
    before = immortus.get_config()
    with pytest.raises(ConfigurationError, match=r"unknown setting.*stroe.*known settings"):
        immortus.configure(stroe="memory://")
    with pytest.raises(ConfigurationError, match="ttl must be positive"):
        immortus.configure(ttl=0)
    with pytest.raises(ConfigurationError, match="progress_interval"):
        immortus.configure(progress_interval=-1)
    with pytest.raises(ConfigurationError, match="store must be a URL"):
        immortus.configure(store=42)
    assert immortus.get_config() is before


def test_configure_keeps_other_settings_and_reopens_the_store() -> None:
    immortus.configure(store="memory://", progress_interval=1)
    first = immortus.get_store()
    immortus.configure(ttl=60)
    assert immortus.get_config().progress_interval == 1
    second = immortus.get_store()
    assert isinstance(second, MemoryStore)
    assert second is not first
    assert second.ttl == 60


def test_a_store_object_is_used_as_given() -> None:
    store = MemoryStore(ttl=None)
    immortus.configure(store=store)
    assert immortus.get_store() is store
    immortus.configure(store=None)
    assert immortus.get_store() is None


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("immortus.sqlite3", "has no scheme"),
        ("ftp://host/x", "no store handles ftp:// URLs"),
    ],
)
def test_bad_store_urls(url: str, match: str) -> None:
    with pytest.raises(InvalidStoreURL, match=match):
        open_store(url)


def test_missing_dependency_names_the_pip_command() -> None:
    error = MissingDependency("redis", "redis")
    assert 'pip install "immortus[redis]"' in str(error)
    assert isinstance(error, ImportError)
    assert isinstance(error, ConfigurationError)


# -- the heartbeat -----------------------------------------------------------------------------


def test_heartbeat_defaults() -> None:
    settings = immortus.get_config()
    assert (settings.heartbeat_interval, settings.heartbeat_timeout) == (10.0, 60.0)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"heartbeat_interval": 0}, "heartbeat_interval must be > 0"),
        ({"heartbeat_interval": -1}, "heartbeat_interval must be > 0"),
        ({"heartbeat_interval": float("nan")}, "heartbeat_interval must be > 0"),
        ({"heartbeat_interval": float("inf")}, "heartbeat_interval must be > 0"),
        ({"heartbeat_interval": True}, "heartbeat_interval must be a number"),
        ({"heartbeat_interval": "10"}, "heartbeat_interval must be a number"),
        ({"heartbeat_timeout": 0}, "heartbeat_timeout must be > 0"),
        ({"heartbeat_timeout": None}, "heartbeat_timeout must be a number"),
        ({"heartbeat_timeout": 19.9}, r"at least twice heartbeat_interval \(10 s\)"),
        ({"heartbeat_interval": 5, "heartbeat_timeout": 9}, "at least twice"),
    ],
)
def test_bad_heartbeat_settings_are_refused(settings: dict[str, object], match: str) -> None:
    before = immortus.get_config()
    with pytest.raises(ConfigurationError, match=match):
        immortus.configure(**settings)
    assert immortus.get_config() is before


def test_heartbeat_settings_that_work() -> None:
    assert (
        immortus.configure(heartbeat_interval=0.2, heartbeat_timeout=0.4).heartbeat_timeout == 0.4
    )
    off = immortus.configure(heartbeat_interval=None, heartbeat_timeout=1)
    assert (off.heartbeat_interval, off.heartbeat_timeout) == (None, 1)  # no interval to check


def test_heartbeat_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMMORTUS_HEARTBEAT_INTERVAL", " 0.25 ")
    monkeypatch.setenv("IMMORTUS_HEARTBEAT_TIMEOUT", "2")
    config.reset()
    settings = immortus.get_config()
    assert (settings.heartbeat_interval, settings.heartbeat_timeout) == (0.25, 2.0)
    monkeypatch.setenv("IMMORTUS_HEARTBEAT_INTERVAL", "OFF")
    monkeypatch.setenv("IMMORTUS_HEARTBEAT_TIMEOUT", "")
    config.reset()
    settings = immortus.get_config()
    assert (settings.heartbeat_interval, settings.heartbeat_timeout) == (None, 60.0)
    assert immortus.configure(heartbeat_interval=1).heartbeat_interval == 1  # configure wins


@pytest.mark.parametrize(
    ("variables", "match"),
    [
        ({"IMMORTUS_HEARTBEAT_INTERVAL": "ten"}, "IMMORTUS_HEARTBEAT_INTERVAL='ten' is not a"),
        ({"IMMORTUS_HEARTBEAT_TIMEOUT": "off"}, "IMMORTUS_HEARTBEAT_TIMEOUT cannot be 'off'"),
        ({"IMMORTUS_HEARTBEAT_INTERVAL": "-1"}, "heartbeat_interval must be > 0"),
        ({"IMMORTUS_HEARTBEAT_TIMEOUT": "5"}, "at least twice"),
    ],
)
def test_bad_heartbeat_variables_are_refused(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], match: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    config.reset()
    with pytest.raises(ConfigurationError, match=match):
        immortus.get_config()


# -- where tracking goes ------------------------------------------------------------------------


def test_the_store_opened_is_logged_once_with_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    immortus.configure(store="sqlite:///jobs.sqlite3")
    with caplog.at_level(logging.INFO, logger="immortus"):
        store = immortus.get_store()
        assert immortus.get_store() is store
    assert [record.getMessage() for record in caplog.records] == [
        f"immortus: tracking jobs in sqlite:///{tmp_path / 'jobs.sqlite3'}"
    ]
    immortus.configure(store=None)  # closes the file before tmp_path goes


def test_describe_tells_the_configuration_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    key = secrets.token_hex(16)
    immortus.configure(
        store="sqlite:///immortus.sqlite3",
        strategy=MemoryStore,  # any class: shown by its import path
        secret_key=key,
        open_endpoints=True,
        ttl=timedelta(hours=1),
        heartbeat_interval=5,
        heartbeat_timeout=20,
    )
    immortus.track(name="reports.build", queue="rq")(lambda: None)
    immortus.declare("ReportJob", queue="delayed_job")
    described = config.describe()
    jobs = described.pop("jobs")
    assert isinstance(jobs, dict)
    assert jobs["ReportJob"] == {"queue": "delayed_job", "strategy": None}
    assert jobs["reports.build"] == {"queue": "rq", "strategy": None}
    assert list(jobs) == sorted(jobs)
    assert described == {
        "store": f"sqlite:///{tmp_path / 'immortus.sqlite3'}",
        "strategy": "immortus.stores.memory:MemoryStore",
        "secret_key_set": True,
        "open_endpoints": True,
        "token_max_age": 86400,
        "progress_interval": 0.2,
        "heartbeat_interval": 5,
        "heartbeat_timeout": 20,
        "ttl": 3600.0,
        "outbox_limit": 10_000,
    }
    assert key not in repr(described)
    assert not (tmp_path / "immortus.sqlite3").exists()  # describing opens nothing


@pytest.mark.parametrize(
    ("store", "shown"),
    [
        ("redis://:pa55@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://app:pa55@db/jobs", "postgresql://app:***@db/jobs"),
        ("sqlite:////var/lib/immortus.db", "sqlite:////var/lib/immortus.db"),
        ("memory://", "memory://"),
        (None, None),
    ],
)
def test_describe_hides_store_passwords(store: str | None, shown: str | None) -> None:
    immortus.configure(store=store)
    assert config.describe()["store"] == shown
    assert config.describe()["secret_key_set"] is False


def test_each_event_is_logged_at_debug(
    memory_store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    immortus.declare("reports.build")
    with caplog.at_level(logging.DEBUG, logger="immortus"):
        lifecycle.job_enqueued("j1", "reports.build")
        lifecycle.job_finished("j1")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "immortus: enqueued job 'j1' (reports.build)"),
        (logging.DEBUG, "immortus: finished job 'j1' (None)"),
    ]

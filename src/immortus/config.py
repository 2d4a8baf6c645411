"""The one configuration object, and :func:`configure` to set it.

Settings come from :func:`configure` (framework integrations translate their own settings into a
call to it) and, for the store and the heartbeat, from environment variables
(``IMMORTUS_STORE``, ``IMMORTUS_HEARTBEAT_INTERVAL``, ``IMMORTUS_HEARTBEAT_TIMEOUT``), so that a
worker started by a queue's own command can be set up without code. Until ``configure`` is
called, immortus tracks into an SQLite file in the working directory, so web and worker
processes started from the same project directory share it with no set-up.

The store immortus opens from a URL is logged at INFO when a process first uses it (an SQLite
file with its absolute path, any password hidden); :func:`describe` tells the whole configuration.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from immortus import registry, runtime
from immortus.exceptions import ConfigurationError
from immortus.stores import open_store, redact_url
from immortus.stores.base import DEFAULT_TTL, Store, ttl_seconds

__all__ = ["DEFAULT_STORE_URL", "Config", "configure", "describe", "get_config", "get_store"]

logger = logging.getLogger("immortus")

#: Where jobs are tracked when nothing else is configured.
DEFAULT_STORE_URL: Final = "sqlite:///immortus.sqlite3"
#: The environment variable that names the store URL.
STORE_ENV: Final = "IMMORTUS_STORE"
#: The environment variable that sets ``heartbeat_interval`` (seconds, or ``off``).
HEARTBEAT_INTERVAL_ENV: Final = "IMMORTUS_HEARTBEAT_INTERVAL"
#: The environment variable that sets ``heartbeat_timeout`` (seconds).
HEARTBEAT_TIMEOUT_ENV: Final = "IMMORTUS_HEARTBEAT_TIMEOUT"
#: Seconds between two heartbeats of a worker process, unless configured.
DEFAULT_HEARTBEAT_INTERVAL: Final = 10.0
#: Seconds without a heartbeat after which a running job reads ``lost``, unless configured.
DEFAULT_HEARTBEAT_TIMEOUT: Final = 60.0
_OFF: Final = frozenset({"off", "none"})


def _store_from_environment() -> str:
    return os.environ.get(STORE_ENV) or DEFAULT_STORE_URL


def _seconds_from_environment(name: str, default: float) -> float | None:
    """Read a number of seconds (or ``off``, read as ``None``) from the variable ``name``.

    Raises:
        ConfigurationError: the variable holds something else.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if text.lower() in _OFF:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(
            f"{name}={text!r} is not a number of seconds (nor 'off')"
        ) from None


def _interval_from_environment() -> float | None:
    return _seconds_from_environment(HEARTBEAT_INTERVAL_ENV, DEFAULT_HEARTBEAT_INTERVAL)


def _timeout_from_environment() -> float:
    timeout = _seconds_from_environment(HEARTBEAT_TIMEOUT_ENV, DEFAULT_HEARTBEAT_TIMEOUT)
    if timeout is None:
        raise ConfigurationError(
            f"{HEARTBEAT_TIMEOUT_ENV} cannot be 'off'; set {HEARTBEAT_INTERVAL_ENV}=off to "
            "disable heartbeats"
        )
    return timeout


def _check_seconds(name: str, value: object) -> float:
    """Return ``value`` if it is a finite number of seconds above 0.

    Raises:
        ConfigurationError: it is not.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{name} must be > 0, not {value!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """immortus's settings. Create changed copies with :func:`configure`, never by mutation."""

    #: The store callback-driven tracking writes to: a URL, a :class:`Store`, or ``None`` to
    #: disable store tracking (jobs then need a strategy of their own).
    store: str | Store | None = field(default_factory=_store_from_environment)
    #: The global strategy (the second step of resolution): a name, ``"pkg.mod:Class"``, a class
    #: or an instance. ``None``: infer each job's strategy from its queue.
    strategy: object | None = None
    #: How long a job's record is kept after its last event (seconds, a timedelta, or ``None``).
    ttl: float | timedelta | None = DEFAULT_TTL
    #: Least time between two progress writes of one job, in seconds; calls in between are
    #: coalesced and the latest is written when the job ends. ``0`` writes every call.
    progress_interval: float = 0.2
    #: The key that signs job tokens (HMAC-SHA256). With a key, ``render_job`` hands out a token
    #: per job and the verify endpoints answer only requests carrying it. ``None``: the
    #: endpoints are open to anyone who knows a job id (a warning says so once). Never printed.
    secret_key: str | bytes | None = field(default=None, repr=False)
    #: Serve the web routes without a secret key, on purpose: anyone who knows a job id may read
    #: its status. Without a key and without this, the routes refuse to serve
    #: (:class:`~immortus.exceptions.EndpointsNotSecured`).
    open_endpoints: bool = False
    #: Seconds a single-job verify may answer from the statuses it read lately, before it asks
    #: the store again (:class:`~immortus.web.recent.RecentStatuses` states the bounds).
    #: ``None``: every verify reads the store.
    answer_staleness: float | None = None
    #: How long a job token stays valid after it is signed, in seconds.
    token_max_age: float = 86400
    #: How many tracking events a process holds in memory, per store, while the store is
    #: unreachable; they are written in order when it is back (:mod:`immortus.outbox`). Past
    #: it the oldest progress and meta events are dropped first. ``0``: hold none (log, lose).
    outbox_limit: int = 10_000
    #: Seconds between two heartbeats of a worker process: one store write per interval for all
    #: the jobs it runs, which keeps them ``started``. ``None`` disables heartbeats (and lost
    #: detection) for the jobs this process starts. Default: ``IMMORTUS_HEARTBEAT_INTERVAL``
    #: (``off`` for ``None``), else 10.
    heartbeat_interval: float | None = field(default_factory=_interval_from_environment)
    #: Seconds without a heartbeat after which a running job reads ``lost``; at least twice
    #: ``heartbeat_interval``. Default: ``IMMORTUS_HEARTBEAT_TIMEOUT``, else 60.
    heartbeat_timeout: float = field(default_factory=_timeout_from_environment)

    def __post_init__(self) -> None:
        if self.store is not None and not isinstance(self.store, str | Store):
            raise ConfigurationError(
                f"store must be a URL, a Store or None, not {type(self.store).__name__}"
            )
        try:
            ttl_seconds(self.ttl)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        interval = self.progress_interval
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise ConfigurationError("progress_interval must be a number of seconds")
        if not (math.isfinite(interval) and interval >= 0):
            raise ConfigurationError(f"progress_interval must be >= 0, not {interval!r}")
        self._check_web_settings()
        if type(self.outbox_limit) is not int or self.outbox_limit < 0:
            raise ConfigurationError(
                f"outbox_limit must be a whole number of events from 0, not {self.outbox_limit!r}"
            )
        timeout = _check_seconds("heartbeat_timeout", self.heartbeat_timeout)
        if self.heartbeat_interval is not None:
            interval = _check_seconds("heartbeat_interval", self.heartbeat_interval)
            if timeout < 2 * interval:
                raise ConfigurationError(
                    f"heartbeat_timeout ({timeout:g} s) must be at least twice heartbeat_interval "
                    f"({interval:g} s), so that one late beat does not make a job lost"
                )

    def _check_web_settings(self) -> None:
        """Check the settings of the web routes: the key, its tokens' age, open endpoints."""
        if self.secret_key is not None:
            if not isinstance(self.secret_key, str | bytes):
                raise ConfigurationError(
                    f"secret_key must be a string, bytes or None, not "
                    f"{type(self.secret_key).__name__}"
                )
            if not self.secret_key:
                raise ConfigurationError("secret_key must not be empty (None leaves it unset)")
        max_age = self.token_max_age
        if isinstance(max_age, bool) or not isinstance(max_age, int | float):
            raise ConfigurationError("token_max_age must be a number of seconds")
        if not (math.isfinite(max_age) and max_age > 0):
            raise ConfigurationError(f"token_max_age must be > 0, not {max_age!r}")
        if self.answer_staleness is not None:
            _check_seconds("answer_staleness", self.answer_staleness)
        if not isinstance(self.open_endpoints, bool):
            raise ConfigurationError(
                f"open_endpoints must be True or False, not {self.open_endpoints!r}"
            )


class Settings:
    """The process-wide settings, the store opened for them, and who to tell of changes.

    A :mod:`runtime <immortus.runtime>` part: its reset forgets the settings (closing the store
    immortus opened) and keeps the listeners, which belong to the parts that registered them.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config: Config | None = None
        self.store: Store | None = None  # opened by immortus from config.store's URL
        self.listeners: list[Callable[[], None]] = []

    def replace(self, config: Config | None) -> None:
        with self.lock:
            old_store, self.store, self.config = self.store, None, config
            for listener in self.listeners:
                listener()
        if old_store is not None:
            old_store.close()

    def reset(self) -> None:
        self.replace(None)

    def after_fork(self) -> None:
        self.lock = threading.RLock()


_settings: Final = runtime.part(Settings)


def get_config() -> Config:
    """Return the settings in force."""
    config = _settings.config
    if config is not None:
        return config
    with _settings.lock:
        if _settings.config is None:
            _settings.config = Config()
        return _settings.config


def configure(**settings: Any) -> Config:
    """Change settings (the names of :class:`Config`'s fields) and return the new ones.

    Settings not named keep their value. A store that immortus opened from the old URL is
    closed; a :class:`Store` object you passed in is yours to close. ``ttl`` applies to stores
    opened from a URL (a store object keeps its own).

    Raises:
        ConfigurationError: a setting is unknown or its value is unusable.
    """
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(sorted(known))}"
        )
    with _settings.lock:
        new = dataclasses.replace(get_config(), **settings)
        _settings.replace(new)
    return new


def reset() -> None:
    """Forget every setting: back to the defaults (and the environment). For tests."""
    _settings.replace(None)


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener()`` whenever the settings change (caches use it to empty themselves)."""
    _settings.listeners.append(listener)


def get_store() -> Store | None:
    """Return the configured store, opening it on first use; ``None`` if tracking is disabled.

    Raises:
        InvalidStoreURL: the configured URL names no store.
        MissingDependency: the store's extra is not installed.
    """
    store = _settings.store  # the hot path: every lifecycle event asks, so no lock once open
    if store is not None:
        return store
    with _settings.lock:
        config = get_config()
        if not isinstance(config.store, str):
            return config.store
        if _settings.store is None:
            _settings.store = open_store(config.store, ttl=config.ttl)
            logger.info("immortus: tracking jobs in %s", describe_store(config.store))
        return _settings.store


def describe_store(store: str | Store | None) -> str | None:
    """Return how to show ``store`` (a setting or a store): passwords hidden, SQLite paths absolute.

    A relative SQLite file is resolved against the current directory, as opening it would be.
    ``None`` (store tracking disabled) stays ``None``.
    """
    if store is None:
        return None
    if isinstance(store, Store):
        path = getattr(store, "path", None)
        return f"sqlite:///{path}" if isinstance(path, Path) else type(store).__qualname__
    scheme, separator, rest = store.partition("://")
    if separator and scheme.lower() == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return f"sqlite:///{Path(rest[1:]).absolute()}"
    return redact_url(store)


def describe() -> dict[str, object]:
    """Return the configuration in force, fit to show (``immortus config``, logs).

    The store is shown with passwords hidden and an SQLite file's absolute path; the secret key
    only as whether one is set. Nothing is opened or changed. The keys: ``store``, ``strategy``,
    ``secret_key_set``, ``open_endpoints``, ``token_max_age``, ``progress_interval``,
    ``heartbeat_interval``, ``heartbeat_timeout``, ``ttl`` (seconds or ``None``),
    ``outbox_limit`` and ``jobs`` (each tracked job class with its ``queue`` and ``strategy``).
    """
    config = get_config()
    return {
        "store": describe_store(config.store),
        "strategy": _spec_name(config.strategy),
        "secret_key_set": config.secret_key is not None,
        "open_endpoints": config.open_endpoints,
        "token_max_age": config.token_max_age,
        "progress_interval": config.progress_interval,
        "heartbeat_interval": config.heartbeat_interval,
        "heartbeat_timeout": config.heartbeat_timeout,
        "ttl": ttl_seconds(config.ttl),
        "outbox_limit": config.outbox_limit,
        "jobs": {
            name: {"queue": job.queue, "strategy": _spec_name(job.strategy)}
            for name, job in sorted(registry.registered().items())
        },
    }


def _spec_name(spec: object) -> str | None:
    """Name a strategy setting: a name as given, a class or instance by its import path."""
    if spec is None or isinstance(spec, str):
        return spec
    kind = spec if isinstance(spec, type) else type(spec)
    return f"{kind.__module__}:{kind.__qualname__}"

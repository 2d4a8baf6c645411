"""Find the tracking strategy of a job, and resolve strategy names.

:func:`find_strategy` is the one rule every surface follows (``immortus.status``, the web
routes, lifecycle events, the CLI): see its docstring for the order, the order of the Ruby gem
immortus. When no step applies, :class:`~immortus.exceptions.StrategyNotFound` (or, for a job
class nobody tracks, :class:`~immortus.exceptions.UntrackedJobClass`) lists every step tried.

Every strategy given by name goes through :func:`resolve_strategy`, which accepts an instance, a
class, a name registered with :func:`register_strategy`, a name from the ``immortus.strategies``
entry-point group (where immortus's own strategies are too, each queue's under its name), or an
import path ``"package.module:Class"``. Only code (settings, decorators)
names strategies: never a request.
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points
from typing import Final

from immortus import config, registry, runtime
from immortus.exceptions import StrategyNotFound, UntrackedJobClass
from immortus.strategy import TrackingStrategy, as_strategy

__all__ = [
    "ENTRY_POINT_GROUP",
    "find_recording_strategy",
    "find_strategy",
    "register_strategy",
    "resolve_strategy",
]

logger = logging.getLogger("immortus")

#: Installed packages can offer strategies under this entry-point group.
ENTRY_POINT_GROUP: Final = "immortus.strategies"

_UNTRACKED: Final = object()
#: How many untracked job classes a process warns about (once each) before it falls quiet.
_UNTRACKED_WARNINGS: Final = 100


class Strategies:
    """The strategies registered by name, the resolved ones, and the warnings given.

    A :mod:`runtime <immortus.runtime>` part. The resolved strategies are forgotten whenever the
    settings or the registry change (it listens from its making on); a reset forgets everything.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.registered: dict[str, object] = {}
        self.by_name: dict[str, TrackingStrategy] = {}
        #: Resolved strategies by registered job class; ``None`` for no class, ``_UNTRACKED``
        #: for every class nobody tracks (so names from outside share one entry).
        self.by_job_class: dict[object, TrackingStrategy] = {}
        self.warned_untracked: set[str] = set()
        config.on_change(self.forget_resolved)
        registry.on_change(self.forget_resolved)

    def forget_resolved(self) -> None:
        with self.lock:
            self.by_name.clear()
            self.by_job_class.clear()

    def reset(self) -> None:
        with self.lock:
            self.registered.clear()
            self.warned_untracked.clear()
        self.forget_resolved()

    def after_fork(self) -> None:
        self.lock = threading.Lock()


_state: Final = runtime.part(Strategies)


def register_strategy(name: str, strategy: object) -> None:
    """Make ``strategy`` (an instance, a class or an import path) available as ``name``.

    This is the Python form of the Ruby gem immortus's
    ``tracking_strategy :my_custom_tracking_strategy``:
    after ``register_strategy("mine", MyStrategy)``, ``@immortus.track(strategy="mine")`` and
    ``immortus.configure(strategy="mine")`` both find it. Registering a name again replaces it.

    Raises:
        InvalidStrategy: ``strategy`` is an object or class that cannot answer status questions.
    """
    if not isinstance(strategy, str):
        as_strategy(strategy)  # refuse a useless strategy now, not at the first job
    with _state.lock:
        _state.registered[name] = strategy
    _state.forget_resolved()


def resolve_strategy(spec: object) -> TrackingStrategy:
    """Return the strategy ``spec`` designates (see the module docstring for the forms).

    Raises:
        StrategyNotFound: a name resolves to nothing; the message lists every place tried.
        InvalidStrategy: what it resolves to cannot answer status questions.
    """
    if not isinstance(spec, str):
        return as_strategy(spec)
    cached = _state.by_name.get(spec)
    if cached is not None:
        return cached
    strategy = as_strategy(_load(spec))
    with _state.lock:
        return _state.by_name.setdefault(spec, strategy)


def _load(name: str) -> object:
    tried: list[str] = []
    if name in _state.registered:
        target = _state.registered[name]
        return _load(target) if isinstance(target, str) else target
    known = ", ".join(sorted(_state.registered)) or "none"
    tried.append(f"registered strategies: no {name!r} (registered: {known})")
    # immortus's own strategies are entry points too; its own come first on a name clash.
    found = sorted(
        entry_points(group=ENTRY_POINT_GROUP, name=name),
        key=lambda point: getattr(point.dist, "name", "") != "immortus",
    )
    for point in found:
        try:
            return point.load()
        except ImportError as exc:
            tried.append(f"entry point {point.value!r} in {ENTRY_POINT_GROUP!r}: {exc}")
            raise StrategyNotFound(f"strategy {name!r}", tried) from exc
    installed = ", ".join(sorted({point.name for point in entry_points(group=ENTRY_POINT_GROUP)}))
    tried.append(
        f"entry points in group {ENTRY_POINT_GROUP!r}: no {name!r} (installed, immortus's own "
        f"among them: {installed or 'none'})"
    )
    if ":" in name or "." in name:
        return _import(name, tried)
    tried.append(f"import path: {name!r} is not of the form 'package.module:Class'")
    raise StrategyNotFound(f"strategy {name!r}", tried)


def _import(path: str, tried: list[str]) -> object:
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        tried.append(f"import {module_name!r}: {exc}")
        raise StrategyNotFound(f"strategy {path!r}", tried) from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        tried.append(f"import {path!r}: module {module_name!r} has no attribute {attribute!r}")
        raise StrategyNotFound(f"strategy {path!r}", tried) from exc


def find_strategy(job_class: str | None = None) -> TrackingStrategy:
    """Return the strategy that tracks jobs of ``job_class`` (``None``: a job of no known class).

    The one rule, in order:

    1. **inline**: ``job_class`` is tracked (``@immortus.track``, :func:`immortus.declare`) and
       declares a strategy;
    2. **global**: ``immortus.configure(strategy=...)`` is set; it answers for every class,
       tracked or not;
    3. **inferred**: ``job_class`` is tracked and declares a queue, whose strategy it is;
    4. **store**: ``job_class`` is ``None`` or tracked, and store tracking is on.

    A class nobody tracks gets no further than step 2. Only registered classes are cached by
    name, so names arriving from outside never grow the cache.

    Raises:
        UntrackedJobClass: ``job_class`` is not tracked and no global strategy is configured.
        StrategyNotFound: no step applies (store tracking is off), or a declared strategy or
            queue names nothing; the message lists every step tried.
        InvalidStrategy: the strategy found cannot answer status questions.
    """
    job = None if job_class is None else registry.lookup(job_class)
    key: object = job_class if job is not None else None if job_class is None else _UNTRACKED
    cached = _state.by_job_class.get(key)
    if cached is not None:
        return cached
    strategy = _find(job_class, job)
    with _state.lock:
        return _state.by_job_class.setdefault(key, strategy)


def find_recording_strategy(job_class: str | None = None) -> TrackingStrategy:
    """Return the strategy that records the events of ``job_class``'s jobs.

    It is :func:`find_strategy`'s, except for a class nobody tracks (and no global strategy):
    its events are recorded as those of a job of no class, so a missing declaration never loses
    them, and a WARNING says once per class that reads naming the class find nothing.

    Raises:
        StrategyNotFound: no strategy applies (store tracking is off and nothing is declared).
        InvalidStrategy: the strategy found cannot answer status questions.
    """
    try:
        return find_strategy(job_class)
    except UntrackedJobClass:
        _warn_untracked(job_class)
        return find_strategy(None)


def _warn_untracked(job_class: str | None) -> None:
    full = len(_state.warned_untracked) >= _UNTRACKED_WARNINGS
    if job_class is None or job_class in _state.warned_untracked or full:
        return
    _state.warned_untracked.add(job_class)
    logger.warning(
        "immortus: job class %r is not tracked: its jobs are recorded as jobs of no class, and "
        "asking for them with the class (immortus.status(job_id, %r), the verify routes) "
        "answers as for an unknown job class; declare it with @immortus.track, or "
        "immortus.declare for a job with no Python function",
        job_class,
        job_class,
    )


def _find(job_class: str | None, job: registry.TrackedJob | None) -> TrackingStrategy:
    tried: list[str] = []
    if job is not None and job.strategy is not None:
        return _declared(job, "strategy", job.strategy, tried)
    if job_class is None:
        tried.append("inline: no job class given")
    elif job is None:
        tried.append(
            f"inline: {job_class!r} is not a tracked job "
            "(see @immortus.track, and immortus.declare for a job with no Python function)"
        )
    else:
        tried.append(f"inline: {job_class!r} declares no strategy")
    settings = config.get_config()
    if settings.strategy is not None:
        return resolve_strategy(settings.strategy)
    tried.append("global: no strategy configured (immortus.configure(strategy=...))")
    if job_class is not None and job is None:
        tried.append(f"inferred: {job_class!r} is not tracked: no queue or store answers for it")
        raise UntrackedJobClass(f"job class {job_class!r}", tried)
    if job is not None and job.queue is not None:
        return _declared(job, "queue", job.queue, tried)
    if settings.store is not None:
        return resolve_strategy("store")
    tried.append("inferred: no queue declared, and store tracking is disabled (store=None)")
    raise StrategyNotFound(f"job class {job_class!r}", tried)


def _declared(
    job: registry.TrackedJob, what: str, spec: object, tried: list[str]
) -> TrackingStrategy:
    """Resolve the strategy or queue ``job`` declares; a name that resolves to nothing says so.

    Raises:
        StrategyNotFound: ``spec`` names nothing; the message names the job class too.
    """
    try:
        return resolve_strategy(spec)
    except StrategyNotFound as exc:
        tried.append(f"{job.job_class!r} declares {what} {spec!r}, which names no strategy")
        raise StrategyNotFound(f"job class {job.job_class!r}", [*tried, *exc.tried]) from exc

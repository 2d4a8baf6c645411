"""Find the tracking strategy of a job, and resolve strategy names.

A job's strategy is, in order (DESIGN §2, the seed's order):

1. its **inline** strategy, declared with ``@immortus.track(strategy=...)``;
2. the **global** strategy, ``immortus.configure(strategy=...)``;
3. the strategy **inferred** from its queue (``TrackedJob.queue``, an integration's name), or,
   for jobs immortus runs itself, the store strategy over the configured store.

When none applies, :class:`~immortus.exceptions.StrategyNotFound` lists every step it tried.

Every strategy given by name goes through :func:`resolve_strategy`, which accepts an instance, a
class, a name registered with :func:`register_strategy`, a name from the ``immortus.strategies``
entry-point group, or an import path ``"package.module:Class"``. Only code (settings, decorators)
names strategies: never a request.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Final

from immortus import config, registry
from immortus.exceptions import StrategyNotFound
from immortus.strategy import TrackingStrategy, as_strategy

__all__ = ["ENTRY_POINT_GROUP", "find_strategy", "register_strategy", "resolve_strategy"]

#: Installed packages can offer strategies under this entry-point group.
ENTRY_POINT_GROUP: Final = "immortus.strategies"

#: Strategies that ship with immortus, imported only when named. A queue's name is the
#: strategy inferred for its jobs (``@immortus.track(queue=...)``): its backend-native strategy
#: where the queue keeps state, the store strategy where it keeps none.
BUILTIN_STRATEGIES: Final = {
    "store": "immortus.store_strategy:StoreStrategy",
    "celery": "immortus.queues.celery:CeleryStrategy",
    "rq": "immortus.queues.rq:RQStrategy",
    "huey": "immortus.store_strategy:StoreStrategy",
    "dramatiq": "immortus.store_strategy:StoreStrategy",
    "django_tasks": "immortus.queues.django_tasks:DjangoTaskStrategy",
    "delayed_job": "immortus.queues.delayed_job:DelayedJobStrategy",
    "sidekiq": "immortus.queues.sidekiq:SidekiqStrategy",
}

_lock = threading.Lock()
_registered: dict[str, object] = {}
_by_name: dict[str, TrackingStrategy] = {}
_by_job_class: dict[str | None, TrackingStrategy] = {}


def _forget_resolved() -> None:
    with _lock:
        _by_name.clear()
        _by_job_class.clear()


config.on_change(_forget_resolved)
registry.on_change(_forget_resolved)


def register_strategy(name: str, strategy: object) -> None:
    """Make ``strategy`` (an instance, a class or an import path) available as ``name``.

    This is the Python form of the seed's ``tracking_strategy :my_custom_tracking_strategy``:
    after ``register_strategy("mine", MyStrategy)``, ``@immortus.track(strategy="mine")`` and
    ``immortus.configure(strategy="mine")`` both find it. Registering a name again replaces it.

    Raises:
        InvalidStrategy: ``strategy`` is an object or class that cannot answer status questions.
    """
    if not isinstance(strategy, str):
        as_strategy(strategy)  # refuse a useless strategy now, not at the first job
    with _lock:
        _registered[name] = strategy
    _forget_resolved()


def resolve_strategy(spec: object) -> TrackingStrategy:
    """Return the strategy ``spec`` designates (see the module docstring for the forms).

    Raises:
        StrategyNotFound: a name resolves to nothing; the message lists every place tried.
        InvalidStrategy: what it resolves to cannot answer status questions.
    """
    if not isinstance(spec, str):
        return as_strategy(spec)
    cached = _by_name.get(spec)
    if cached is not None:
        return cached
    strategy = as_strategy(_load(spec))
    with _lock:
        return _by_name.setdefault(spec, strategy)


def _load(name: str) -> object:
    tried: list[str] = []
    if name in _registered:
        target = _registered[name]
        return _load(target) if isinstance(target, str) else target
    known = ", ".join(sorted(_registered)) or "none"
    tried.append(f"registered strategies: no {name!r} (registered: {known})")
    if name in BUILTIN_STRATEGIES:
        return _import(BUILTIN_STRATEGIES[name], tried)
    tried.append(f"built-in strategies: no {name!r} (built in: {', '.join(BUILTIN_STRATEGIES)})")
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    for point in found:
        try:
            return point.load()
        except ImportError as exc:
            tried.append(f"entry point {point.value!r} in {ENTRY_POINT_GROUP!r}: {exc}")
            raise StrategyNotFound(f"strategy {name!r}", tried) from exc
    tried.append(f"entry points in group {ENTRY_POINT_GROUP!r}: no {name!r} installed")
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

    Raises:
        StrategyNotFound: no step of the resolution order gives a strategy.
        InvalidStrategy: the strategy found cannot answer status questions.
    """
    # An unregistered class resolves exactly like no class: one cache entry for all of them,
    # so names arriving from outside can never grow the cache.
    key = job_class if job_class is not None and registry.lookup(job_class) else None
    cached = _by_job_class.get(key)
    if cached is not None:
        return cached
    strategy = _find(job_class)
    with _lock:
        return _by_job_class.setdefault(key, strategy)


def _find(job_class: str | None) -> TrackingStrategy:
    tried: list[str] = []
    job = None if job_class is None else registry.lookup(job_class)
    if job is not None and job.strategy is not None:
        return resolve_strategy(job.strategy)
    if job_class is None:
        tried.append("inline: no job class given")
    elif job is None:
        tried.append(f"inline: {job_class!r} is not a tracked job (see @immortus.track)")
    else:
        tried.append(f"inline: {job_class!r} declares no strategy")
    settings = config.get_config()
    if settings.strategy is not None:
        return resolve_strategy(settings.strategy)
    tried.append("global: no strategy configured (immortus.configure(strategy=...))")
    if job is not None and job.queue is not None:
        return resolve_strategy(job.queue)
    if settings.store is not None:
        return resolve_strategy("store")
    tried.append("inferred: no queue declared, and store tracking is disabled (store=None)")
    raise StrategyNotFound(f"job class {job_class!r}", tried)

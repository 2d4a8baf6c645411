"""Every exception immortus raises, in one tree.

```
ImmortusError
├── ConfigurationError          the project is set up wrongly; fix the code or settings
│   ├── StrategyNotFound        a strategy name resolved to nothing (lists every name tried)
│   │   └── UntrackedJobClass   a job class is not tracked and no global strategy answers for it
│   ├── InvalidStrategy         an object cannot serve as a tracking strategy
│   ├── InvalidStoreURL         a store URL names no known store or is malformed
│   ├── MissingDependency       an optional extra is not installed (also an ImportError)
│   └── EndpointsNotSecured     the web routes have no secret key and were not declared open
├── InvalidInput                a value given to immortus is malformed (also a ValueError)
│   ├── InvalidJobId
│   ├── InvalidJobClass
│   ├── InvalidState
│   └── InvalidProgress
├── NotInJob                    a function that needs a running tracked job was called outside one
├── NotCancellable              nothing can cancel jobs of this class (also a NotImplementedError)
├── StrategyError               a strategy or a queue's canceller raised something unexpected
└── StoreError                  a store failed
    ├── StoreUnavailable        the store's server or file cannot be reached right now
    └── CorruptRecord           a stored record cannot be decoded
```

Driver errors (redis, SQLAlchemy, sqlite3) are translated at the store boundary with
``raise StoreUnavailable(...) from exc``, so callers only ever need this tree. The web layer maps
``InvalidInput`` to 400, ``NotCancellable`` to 405, ``StoreUnavailable`` to 503 and
``StrategyError`` to 500.

One exception stands outside the tree on purpose: :class:`immortus.JobCancelled`, which
:func:`immortus.progress` raises inside a job whose cancellation was requested. It is not an
error but a signal to stop, so, like :class:`asyncio.CancelledError`, it is a
:class:`BaseException` that ``except Exception`` does not catch.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigurationError",
    "CorruptRecord",
    "EndpointsNotSecured",
    "ImmortusError",
    "InvalidInput",
    "InvalidJobClass",
    "InvalidJobId",
    "InvalidProgress",
    "InvalidState",
    "InvalidStoreURL",
    "InvalidStrategy",
    "MissingDependency",
    "NotCancellable",
    "NotInJob",
    "StoreError",
    "StoreUnavailable",
    "StrategyError",
    "StrategyNotFound",
    "UntrackedJobClass",
]


class ImmortusError(Exception):
    """Base class of every error immortus raises."""


class ConfigurationError(ImmortusError):
    """The project is set up wrongly: a setting, a strategy or a store cannot be used."""


class StrategyNotFound(ConfigurationError):
    """No tracking strategy could be found.

    ``tried`` lists, in order, every place that was looked at, so the message tells the user
    which names to register or which extra to install.
    """

    def __init__(self, subject: str, tried: Iterable[str]) -> None:
        self.subject = subject
        self.tried = tuple(tried)
        lines = "\n".join(f"  - {place}" for place in self.tried)
        super().__init__(f"no tracking strategy found for {subject}; tried:\n{lines}")


class UntrackedJobClass(StrategyNotFound):
    """A job class named by a caller is not tracked, and no global strategy answers for it.

    The web layer answers it exactly like an unknown job (404); the Python API raises it.
    """


class InvalidStrategy(ConfigurationError):
    """An object was given as a tracking strategy but cannot serve as one."""


class InvalidStoreURL(ConfigurationError):
    """A store URL is malformed or names a scheme no store handles."""


class MissingDependency(ConfigurationError, ImportError):
    """An optional integration was used without its extra installed.

    The message carries the exact ``pip install`` command to run.
    """

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package!r} is not installed; it is needed for this feature. "
            f'Install it with: pip install "immortus[{extra}]"'
        )


class EndpointsNotSecured(ConfigurationError):
    """The web routes were asked to serve with no secret key, and the app did not declare them open.

    Set ``immortus.configure(secret_key=...)`` (Django derives one from ``SECRET_KEY``), or, for
    endpoints that are meant to be public, ``immortus.configure(open_endpoints=True)``.
    """


class InvalidInput(ImmortusError, ValueError):
    """A value handed to immortus is malformed. Nothing was stored."""


class InvalidJobId(InvalidInput):
    """A job id is empty, too long, not a string or not printable."""


class InvalidJobClass(InvalidInput):
    """A job class name is empty, too long, not a string or not printable."""


class InvalidState(InvalidInput):
    """A state name is not one of :class:`immortus.State`'s values."""


class InvalidProgress(InvalidInput):
    """Progress numbers are negative, not finite, or overshoot the total without permission."""


class NotInJob(ImmortusError, RuntimeError):
    """A function that needs a running tracked job was called outside one."""


class NotCancellable(ImmortusError, NotImplementedError):
    """Nothing can cancel jobs of this class: its strategy cannot, and its queue has no canceller.

    The message names the job class and why. Raised by :func:`immortus.cancel` before it reads
    or changes anything, or by a queue's canceller that refuses a job in its present state.
    """


class StrategyError(ImmortusError):
    """A tracking strategy or a queue's canceller raised something unexpected.

    Raised while answering a status question or cancelling a job; the original error is
    ``__cause__``.
    """


class StoreError(ImmortusError):
    """A store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (server down, file locked for too long)."""


class CorruptRecord(StoreError):
    """A stored record cannot be decoded; the record is left untouched."""

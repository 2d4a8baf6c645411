"""Bounded streams: how many a process holds, how many one client holds, and for how long.

A stream holds a connection for as long as its job runs: under WSGI a server thread too. So
every adapter admits a stream (:func:`admit`) before it starts sending it:

- at most ``max_open`` streams per process: past it, **503** with a ``Retry-After`` header;
- at most ``per_token`` streams per job token and ``per_subject`` per subject (the user or
  session tokens are bound to), so one client cannot hold every slot: past either, **429**
  with a ``Retry-After`` header. A request without a token (open routes) or without a subject
  is counted against the process limit only;
- each stream ends after at most ``lifetime`` seconds with a ``retry:`` field: the browser's
  ``EventSource`` reconnects by itself after ``reconnect`` seconds, and the new request is
  admitted like any other, so waiting clients get their turn;
- under WSGI (``for`` iteration) a comment is sent after at most ``keepalive`` seconds of
  silence: a server learns that a client left only when a write fails, so a left client's
  thread is freed within two keep-alives (half a second by default).

Both refusals are a JSON error body of type ``TooManyStreams``; the JavaScript client falls
back to polling when a stream cannot open. Only a stream that will stay open needs a slot: a
refused request (400, 404), a failure at the start, or a job already completed is one frame
and is never counted. The slot is given back when the stream ends, when the server closes it
(the client left), or at the latest when the stream is garbage-collected.

The counts are per process (after ``os.fork()`` the child starts from zero); the limits are
the caller's, so two adapters in one process share the counts and each applies its own limits.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Self

from immortus import runtime
from immortus.exceptions import ConfigurationError
from immortus.web.responses import JSON_HEADERS, WebResponse, error_body
from immortus.web.stream import KEEPALIVE, StreamResponse

__all__ = [
    "ASGI_LIMITS",
    "WSGI_LIMITS",
    "Refused",
    "Slot",
    "StreamLimiter",
    "StreamLimits",
    "admit",
    "get_limiter",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamLimits:
    """How many streams a process admits, per client and in all, and how long each lasts.

    Start from :data:`WSGI_LIMITS` or :data:`ASGI_LIMITS` (``StreamLimits.wsgi(max_open=8)``):
    the fields say what each number bounds.

    Raises:
        ConfigurationError: a count is not a whole number from 0, or a duration is not a
            positive number of seconds.
    """

    #: Streams open at once in this process; ``0`` refuses every stream (clients poll).
    max_open: int
    #: Streams open at once with one job token.
    per_token: int
    #: Streams open at once for one subject (see ``subject`` of the adapters).
    per_subject: int
    #: Seconds after which a stream ends, asking the browser to reconnect.
    lifetime: float
    #: Under WSGI, most seconds without a write: a write is how a server learns a client left.
    keepalive: float
    #: Seconds the browser waits before reconnecting after a stream's lifetime (``retry:``).
    reconnect: float
    #: Seconds a refused client is told to wait (``Retry-After``).
    retry_after: int

    def __post_init__(self) -> None:
        for name in ("max_open", "per_token", "per_subject", "retry_after"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ConfigurationError(
                    f"streams: {name} must be a whole number from 0, not {value!r}"
                )
        for name in ("lifetime", "keepalive", "reconnect"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(
                    f"streams: {name} must be a number of seconds, not {value!r}"
                )
            if not (math.isfinite(value) and value > 0):
                raise ConfigurationError(f"streams: {name} must be > 0 seconds, not {value!r}")

    @classmethod
    def wsgi(cls, **changes: Any) -> Self:
        """Return :data:`WSGI_LIMITS` with ``changes`` (field names as keywords)."""
        return cls._changed(WSGI_LIMITS, changes)

    @classmethod
    def asgi(cls, **changes: Any) -> Self:
        """Return :data:`ASGI_LIMITS` with ``changes`` (field names as keywords)."""
        return cls._changed(ASGI_LIMITS, changes)

    @classmethod
    def _changed(cls, base: StreamLimits, changes: Mapping[str, Any]) -> Self:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigurationError(
                f"streams: unknown setting {', '.join(map(repr, unknown))}; known settings: "
                f"{', '.join(sorted(known))}"
            )
        values = {name: getattr(base, name) for name in known} | dict(changes)
        return cls(**values)


#: Under WSGI every open stream holds a server thread, and the thread count is the server's
#: secret: two per process leave the other threads of a 4-thread worker (gunicorn ``gthread``
#: ``--threads 4``, waitress's default) to every other request. One per token and per subject:
#: one client never holds both. A minute's lifetime rotates the slots among waiting clients.
WSGI_LIMITS: Final = StreamLimits(
    max_open=2,
    per_token=1,
    per_subject=1,
    lifetime=60.0,
    keepalive=KEEPALIVE,
    reconnect=2.0,
    retry_after=5,
)
#: Under ASGI an open stream is a coroutine and a socket (about 26 KB with uvicorn): 256 per
#: process is a few MB, and one change-feed query per tick for all of them. Two per token (a
#: job open in two tabs) and eight per subject.
ASGI_LIMITS: Final = StreamLimits(
    max_open=256,
    per_token=2,
    per_subject=8,
    lifetime=600.0,
    keepalive=KEEPALIVE,
    reconnect=2.0,
    retry_after=5,
)


class Refused(NamedTuple):
    """Why :meth:`StreamLimiter.acquire` admitted no stream: the HTTP status and a sentence."""

    status: int
    message: str


_PROCESS_FULL: Final = Refused(
    503, "this server holds as many event streams as it may; poll verify, or retry later"
)
_CLIENT_FULL: Final = Refused(
    429, "this client holds as many event streams as it may; poll verify, or retry later"
)


class Slot:
    """One admitted stream's place in its :class:`StreamLimiter`; :meth:`release` gives it back.

    Releasing twice, or after the limiter was reset (a forked child), changes nothing.
    """

    __slots__ = ("__weakref__", "_generation", "_keys", "_limiter", "released")

    def __init__(self, limiter: StreamLimiter, keys: tuple[tuple[str, str], ...], generation: int):
        self._limiter = limiter
        self._keys = keys
        self._generation = generation
        self.released = False

    def release(self) -> None:
        """Give the place back (idempotent, any thread)."""
        self._limiter._release(self)


class StreamLimiter:
    """Counts the open streams of a process, in all and per token and subject.

    Thread-safe. One per process (:func:`get_limiter`); the limits are the caller's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._open = 0
        self._held: dict[tuple[str, str], int] = {}

    def __repr__(self) -> str:
        return f"<StreamLimiter open={self._open}>"

    @property
    def open(self) -> int:
        """How many streams hold a slot now."""
        return self._open

    def held(self, *, token: str | None = None, subject: str | None = None) -> int:
        """How many slots ``token`` holds now, or ``subject`` when no token is given."""
        if token is not None:
            return self._held.get(("token", token), 0)
        return 0 if subject is None else self._held.get(("subject", subject), 0)

    def keys(self) -> int:
        """How many tokens and subjects hold a slot now (none is kept at zero)."""
        return len(self._held)

    def acquire(
        self, limits: StreamLimits, *, token: str | None = None, subject: str | None = None
    ) -> Slot | Refused:
        """Take a slot under ``limits`` for a stream of ``token`` and ``subject``, or say why not.

        The process limit is checked first (503), then the token's and the subject's (429).
        """
        keys: list[tuple[tuple[str, str], int]] = []
        if token is not None:
            keys.append((("token", token), limits.per_token))
        if subject is not None:
            keys.append((("subject", subject), limits.per_subject))
        with self._lock:
            if self._open >= limits.max_open:
                return _PROCESS_FULL
            if any(self._held.get(key, 0) >= most for key, most in keys):
                return _CLIENT_FULL
            self._open += 1
            for key, _ in keys:
                self._held[key] = self._held.get(key, 0) + 1
            return Slot(self, tuple(key for key, _ in keys), self._generation)

    def _release(self, slot: Slot) -> None:
        with self._lock:
            if slot.released:
                return
            slot.released = True
            if slot._generation != self._generation:
                return  # taken before a reset: not counted any more
            self._open -= 1
            for key in slot._keys:
                left = self._held[key] - 1
                if left:
                    self._held[key] = left
                else:
                    del self._held[key]

    def reset(self) -> None:
        """Forget every slot (a forked child holds none of its parent's streams)."""
        self._lock = threading.Lock()  # the parent's may have been held at fork
        self._generation += 1
        self._open = 0
        self._held = {}

    def after_fork(self) -> None:
        """In a forked child: forget every slot, as :meth:`reset`."""
        self.reset()


_limiter: Final = runtime.part(StreamLimiter)


def get_limiter() -> StreamLimiter:
    """Return this process's stream limiter (a :mod:`runtime <immortus.runtime>` part)."""
    return _limiter


def _refusal(job_id: str | None, refused: Refused, limits: StreamLimits) -> StreamResponse:
    """Return the JSON answer to a stream that was not admitted: 503 or 429, ``Retry-After``."""
    headers = MappingProxyType({**JSON_HEADERS, "Retry-After": str(limits.retry_after)})
    body = error_body(job_id, "TooManyStreams", refused.message)
    return StreamResponse.plain(WebResponse(refused.status, body, headers), job_id)


def admit(
    stream: StreamResponse,
    limits: StreamLimits,
    *,
    token: str | None = None,
    subject: str | None = None,
    limiter: StreamLimiter | None = None,
) -> StreamResponse:
    """Return ``stream`` bounded by ``limits``, or the 503/429 answer if it cannot be admitted.

    Call it with the stream a verifier answered, before sending it. A stream of one frame (a
    refusal, a failure, a completed job) is returned as it is. Otherwise a slot is taken for
    ``token`` and ``subject`` (in ``limiter``, by default the process's) and handed to the
    stream, which gives it back when it ends or is closed; the stream's ``lifetime``,
    ``keepalive`` and ``reconnect`` are set from ``limits``.
    """
    if not stream.lasting:
        return stream
    taken = (limiter or _limiter).acquire(limits, token=token, subject=subject)
    if isinstance(taken, Refused):
        stream.close()
        return _refusal(stream.job[0] or None, taken, limits)
    stream.lifetime = limits.lifetime
    stream.keepalive = limits.keepalive
    stream.reconnect = limits.reconnect
    stream.hold(taken)
    return stream

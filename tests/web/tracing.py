"""Instruments for the adapters' tests: streams that say when they start and end, a body meter.

- :class:`TracingVerifier` (with :class:`TracedStream`): did the adapter stop a stream's polls
  when the client left?
- :class:`WSGIBodyMeter`: how much of a request body did the app read before it refused it?

They wrap real components (a real verifier, a real app) and change nothing of what they see.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import IO, TYPE_CHECKING

from immortus.web import StreamResponse, Verifier
from immortus.web.stream_limits import StreamLimits

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["TracedStream", "TracingVerifier", "WSGIBodyMeter"]


class TracedStream(StreamResponse):
    """A core stream that sets ``started`` when its frames start and ``ended`` when they end.

    Iterate it with ``for`` (WSGI) or ``async for`` (ASGI), as the core stream it wraps.
    ``ended`` is set however the iteration stops: the last frame, or the generator closed
    because the client left.
    """

    def __init__(self, inner: StreamResponse, started: threading.Event, ended: threading.Event):
        self.status = inner.status
        self.inner, self.started, self.ended = inner, started, ended

    def __iter__(self) -> Iterator[bytes]:
        self.started.set()
        try:
            yield from self.inner
        finally:
            self.ended.set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started.set()
        try:
            async for frame in self.inner:
                yield frame
        finally:
            self.ended.set()


class TracingVerifier(Verifier):
    """A verifier (open: no secret key) whose streams, sync and async, are traced.

    Its streams poll every ``interval`` seconds and send a heartbeat after ``heartbeat`` seconds
    of silence (the core's default when ``None``), whatever the request asked. ``started`` and
    ``ended`` are shared by all its streams: clear them before a test that reads them.
    """

    def __init__(self, *, interval: float, heartbeat: float | None = None) -> None:
        super().__init__(open_endpoints=True)
        self.interval = interval
        self.heartbeat = 15.0 if heartbeat is None else heartbeat
        self.started = threading.Event()
        self.ended = threading.Event()

    def stream(
        self,
        job_id: str,
        job_class: str | None = None,
        token: str | None = None,
        *,
        subject: str | None = None,
        limits: StreamLimits | None = None,
        **_: float,
    ) -> StreamResponse:
        timing = {"interval": self.interval, "heartbeat": self.heartbeat}
        inner = super().stream(job_id, job_class, token, subject=subject, limits=limits, **timing)
        return TracedStream(inner, self.started, self.ended)

    async def astream(
        self,
        job_id: str,
        job_class: str | None = None,
        token: str | None = None,
        *,
        subject: str | None = None,
        limits: StreamLimits | None = None,
        **_: float,
    ) -> StreamResponse:
        timing = {"interval": self.interval, "heartbeat": self.heartbeat}
        inner = await super().astream(
            job_id, job_class, token, subject=subject, limits=limits, **timing
        )
        return TracedStream(inner, self.started, self.ended)


class WSGIBodyMeter:
    """WSGI middleware counting, in ``read``, the request body bytes the app read."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.read = 0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"] = _CountingInput(environ["wsgi.input"], self)
        return self.app(environ, start_response)


class _CountingInput:
    """A ``wsgi.input`` stream adding the bytes read from it to its meter's count."""

    def __init__(self, inner: IO[bytes], meter: WSGIBodyMeter) -> None:
        self.inner, self.meter = inner, meter

    def read(self, size: int = -1) -> bytes:
        return self._count(self.inner.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._count(self.inner.readline(size))

    def _count(self, data: bytes) -> bytes:
        self.meter.read += len(data)
        return data

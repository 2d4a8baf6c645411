"""Server-Sent Events: watch one job and push its verify body each time it changes.

A stream is opened by :meth:`immortus.web.Verifier.stream` (or ``astream``), which answers the
first request exactly as verify would. Refused (400, 404) or failed (500, 503) at the start, the
stream is one ``event: error`` frame carrying verify's body, with verify's status code. Accepted,
it is:

- one ``data: {body}`` frame now, and one more each time the body changes;
- a ``: heartbeat`` comment when nothing has been sent for ``heartbeat`` seconds, so proxies
  keep the connection open;
- the end, right after a frame whose body is ``completed``.

Streams do not poll on their own: each subscribes its job to the process's shared change feed
of its ``interval`` (:mod:`immortus.web.feed`), which asks the strategies about every streamed
job at once, every ``interval`` seconds (50 ms by default), and wakes a stream only when its
job's answer changed. While the store is unreachable the stream sends one ``event: error``
frame with the 503 body and keeps heart-beating, while the feed polls with exponential back-off
(up to 10 s between polls); when the store answers again the current body is sent whether or
not it changed. After ``give_up_after`` seconds of continuous outage (60 by default) the
stream ends; the JavaScript client then falls back to polling. A 404 (the record expired) or a
500 (the strategy broke) mid-stream sends one ``event: error`` frame and ends.

A :class:`StreamResponse` is iterated once, with ``for`` in a WSGI server (the thread waits for
the feed) or ``async for`` in an ASGI one (the event loop never waits on a store). It subscribes
when its first frame has been taken, and leaves the feed when it ends or is closed (a server
closes it when the client leaves).

Bounds (set by :func:`immortus.web.stream_limits.admit`, which the adapters call): after
``lifetime`` seconds the stream sends a ``retry:`` field (the browser reconnects after
``reconnect`` seconds) and ends; under ``for`` iteration a heartbeat is sent after at most
``keepalive`` seconds of silence (a quarter of a second by default), since a WSGI server learns
that a client left only when a write fails; and the slot the stream was admitted with is given
back when it ends or is closed.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Final, Protocol

from immortus.web.feed import DEFAULT_TICK, MAX_BACKOFF, ChangeFeed, JobRef, Outcome, feed_for
from immortus.web.responses import EVENT_STREAM_HEADERS, WebResponse

__all__ = [
    "HEARTBEAT",
    "KEEPALIVE",
    "MAX_BACKOFF",
    "RECONNECT",
    "StreamResponse",
    "data_frame",
    "error_frame",
    "retry_frame",
]

#: The comment frame sent when nothing else was sent for a while.
HEARTBEAT: Final = b": heartbeat\n\n"
#: Under ``for`` iteration, most seconds without a write, unless set otherwise.
KEEPALIVE: Final = 0.25
#: Seconds the browser waits before reconnecting to a stream that ended its lifetime.
RECONNECT: Final = 2.0


def data_frame(response: WebResponse) -> bytes:
    """Return the SSE frame carrying a verify body (compact JSON holds no newline)."""
    return b"data: " + response.content() + b"\n\n"


def error_frame(response: WebResponse) -> bytes:
    """Return the ``event: error`` frame carrying an error (or unknown-job) body."""
    return b"event: error\ndata: " + response.content() + b"\n\n"


def retry_frame(seconds: float) -> bytes:
    """Return the frame that sets the browser's reconnection delay (``retry:``, in ms)."""
    return b"retry: %d\n\n" % max(0, round(seconds * 1000))


class Releasable(Protocol):
    """What a stream gives back when it ends: a slot of :mod:`immortus.web.stream_limits`."""

    def release(self) -> None:
        """Give the slot back; called once or more, from any thread."""


class _Watch:
    """The stream's decisions, free of I/O: what to send on news, what to send on silence."""

    def __init__(
        self,
        first: bytes,
        *,
        heartbeat: float,
        give_up_after: float,
        lifetime: float | None,
        reconnect: float,
    ) -> None:
        self.heartbeat = heartbeat
        self.give_up_after = give_up_after
        self.last = first
        self.last_sent = time.monotonic()
        self.outage_since: float | None = None
        self.done = False
        # Each stream ends between 90 and 100 % of its lifetime: streams opened together (a
        # restart) do not all reconnect together.
        share = random.uniform(0.9, 1.0)  # noqa: S311  # spreading, not secrecy
        self.ends = None if lifetime is None else self.last_sent + lifetime * share
        self.reconnect = reconnect

    def patience(self) -> float:
        """Seconds to wait for news before :meth:`idle` has something to do."""
        now = time.monotonic()
        wait = self.last_sent + self.heartbeat - now
        if self.outage_since is not None:
            wait = min(wait, self.outage_since + self.give_up_after - now)
        if self.ends is not None:
            wait = min(wait, self.ends - now)
        return max(0.0, wait)

    def feed(self, response: WebResponse) -> list[bytes]:
        """Return the frames to send now that the job's answer is ``response``."""
        frames = self._news(response)
        return frames if self.done else frames + self._expiry()

    def _news(self, response: WebResponse) -> list[bytes]:
        now = time.monotonic()
        if response.status == 200:
            recovered = self.outage_since is not None
            self.outage_since = None
            content = response.content()
            if content != self.last or recovered:
                self.last, self.last_sent = content, now
                self.done = response.body.get("completed") is True
                return [data_frame(response)]
        elif response.status == 503:
            if self.outage_since is None:
                self.outage_since, self.last_sent = now, now
                return [error_frame(response)]
        else:
            self.done = True
            return [error_frame(response)]
        return self.idle()

    def idle(self) -> list[bytes]:
        """Return what to send when nothing new came: a heartbeat when due; end a long outage.

        At the end of the stream's lifetime: the ``retry:`` frame, and the end.
        """
        now = time.monotonic()
        if self.outage_since is not None and now - self.outage_since >= self.give_up_after:
            self.done = True
            return []
        expired = self._expiry()
        if expired:
            return expired
        if now - self.last_sent >= self.heartbeat:
            self.last_sent = now
            return [HEARTBEAT]
        return []

    def _expiry(self) -> list[bytes]:
        """The ``retry:`` frame, ending the stream, once its lifetime is over; else nothing."""
        if self.ends is None or time.monotonic() < self.ends:
            return []
        self.done = True
        return [retry_frame(self.reconnect)]


class StreamResponse:
    """A Server-Sent Events answer: send ``status`` and ``headers``, then iterate the frames.

    ``status`` is what verify answered at the start (200, or 400/404/500/503 for a stream that is
    only one error frame). After the opening frame, the stream follows ``job`` on
    :attr:`feed` and turns each new outcome into a verify answer with ``answer``. Iterate once:
    ``for`` blocks between changes, ``async for`` does not. A server that sends the frames
    calls :meth:`close` when it is done with them, whether or not it iterated them all
    (:meth:`frames` and :meth:`aframes` are iterables whose ``close`` does that).
    """

    headers: Mapping[str, str] = EVENT_STREAM_HEADERS
    #: The change feed to follow; ``None`` (the default): the process's shared feed polling
    #: every ``interval`` seconds (:func:`immortus.web.feed.feed_for`). Set before iterating.
    feed: ChangeFeed | None = None
    #: Seconds after which the stream sends ``retry:`` and ends; ``None``: it lasts until the
    #: job is completed. Set before iterating.
    lifetime: float | None = None
    #: Under ``for`` iteration, most seconds of silence before a heartbeat. Set before iterating.
    keepalive: float = KEEPALIVE
    #: The reconnection delay the ``retry:`` frame asks of the browser, in seconds.
    reconnect: float = RECONNECT
    #: Whether the stream stays open after its first frame (it needs a slot to be admitted).
    lasting: bool = False
    _slot: Releasable | None = None

    def __init__(
        self,
        first: WebResponse,
        job: JobRef,
        answer: Callable[[Outcome], WebResponse],
        *,
        interval: float = DEFAULT_TICK,
        heartbeat: float = 15.0,
        give_up_after: float = 60.0,
    ) -> None:
        self.status = first.status
        self.job = job
        self._answer = answer
        self._interval = interval
        self._heartbeat = heartbeat
        self._give_up_after = give_up_after
        self._first = first.content()
        if first.status != 200:
            self._opening = error_frame(first)
        else:
            self._opening = data_frame(first)
            self.lasting = first.body.get("completed") is not True

    @classmethod
    def plain(cls, response: WebResponse, job_id: str | None = None) -> StreamResponse:
        """Return a stream answering ``response`` as it is: its status, headers and JSON body.

        For a stream refused before it opened (see :mod:`immortus.web.stream_limits`).
        """
        stream = cls.__new__(cls)
        stream.status = response.status
        stream.headers = response.headers
        stream.job = (job_id or "", None)
        stream._opening = response.content()
        return stream

    def hold(self, slot: Releasable) -> None:
        """Keep ``slot`` while the stream is open; release it when the stream ends or closes.

        At the latest, the slot is released when the stream is garbage-collected.
        """
        self._slot = slot
        weakref.finalize(self, slot.release)

    def close(self) -> None:
        """Give back the stream's slot (idempotent); the stream's generator calls it as it ends.

        The generator itself is closed by the server that iterates it.
        """
        slot = self._slot
        if slot is not None:
            slot.release()

    def frames(self) -> _Frames:
        """The frames for a WSGI server: iterable once, and ``close()`` ends the stream."""
        return _Frames(self)

    def aframes(self) -> _AsyncFrames:
        """The frames for an ASGI server: async-iterable once; ``close()`` ends the stream."""
        return _AsyncFrames(self)

    def _changes(self) -> ChangeFeed:
        return self.feed or feed_for(self._interval)

    def _watch(self, heartbeat: float) -> _Watch:
        return _Watch(
            self._first,
            heartbeat=heartbeat,
            give_up_after=self._give_up_after,
            lifetime=self.lifetime,
            reconnect=self.reconnect,
        )

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield self._opening
            if not self.lasting:
                return
            watch = self._watch(min(self._heartbeat, self.keepalive))
            with self._changes().subscribe(*self.job) as changes:
                while not watch.done:
                    if changes.next_change(watch.patience()):
                        yield from watch.feed(self._answer(changes.take()))
                    else:
                        yield from watch.idle()
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield self._opening
            if not self.lasting:
                return
            watch = self._watch(self._heartbeat)
            loop = asyncio.get_running_loop()
            with self._changes().subscribe(*self.job, loop=loop) as changes:
                while not watch.done:
                    if await changes.anext_change(watch.patience()):
                        frames = watch.feed(self._answer(changes.take()))
                    else:
                        frames = watch.idle()
                    for frame in frames:
                        yield frame
        finally:
            self.close()


class _Frames:
    """:meth:`StreamResponse.frames`: no ``__aiter__``, so servers iterate it with ``for``."""

    def __init__(self, stream: StreamResponse) -> None:
        self._stream = stream
        self._frames = iter(stream)

    def __iter__(self) -> Iterator[bytes]:
        return self._frames

    def close(self) -> None:
        """End the stream: close its generator (it leaves the feed) and give its slot back."""
        try:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
        finally:
            self._stream.close()


class _AsyncFrames:
    """:meth:`StreamResponse.aframes`: no ``__iter__``, so servers iterate it with ``async for``."""

    def __init__(self, stream: StreamResponse) -> None:
        self._stream = stream
        self._frames = aiter(stream)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames

    def close(self) -> None:
        """Give the stream's slot back (its generator is closed by whoever iterated it)."""
        self._stream.close()

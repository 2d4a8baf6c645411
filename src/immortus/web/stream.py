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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Final

from immortus.web.feed import DEFAULT_TICK, MAX_BACKOFF, ChangeFeed, JobRef, Outcome, feed_for
from immortus.web.responses import EVENT_STREAM_HEADERS, WebResponse

__all__ = ["HEARTBEAT", "MAX_BACKOFF", "StreamResponse", "data_frame", "error_frame"]

#: The comment frame sent when nothing else was sent for a while.
HEARTBEAT: Final = b": heartbeat\n\n"


def data_frame(response: WebResponse) -> bytes:
    """Return the SSE frame carrying a verify body (compact JSON holds no newline)."""
    return b"data: " + response.content() + b"\n\n"


def error_frame(response: WebResponse) -> bytes:
    """Return the ``event: error`` frame carrying an error (or unknown-job) body."""
    return b"event: error\ndata: " + response.content() + b"\n\n"


class _Watch:
    """The stream's decisions, free of I/O: what to send on news, what to send on silence."""

    def __init__(self, first: WebResponse, *, heartbeat: float, give_up_after: float) -> None:
        self.heartbeat = heartbeat
        self.give_up_after = give_up_after
        self.last = first.content()
        self.last_sent = time.monotonic()
        self.outage_since: float | None = None
        self.done = False

    def patience(self) -> float:
        """Seconds to wait for news before :meth:`idle` has something to do."""
        now = time.monotonic()
        wait = self.last_sent + self.heartbeat - now
        if self.outage_since is not None:
            wait = min(wait, self.outage_since + self.give_up_after - now)
        return max(0.0, wait)

    def feed(self, response: WebResponse) -> list[bytes]:
        """Return the frames to send now that the job's answer is ``response``."""
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
        """Return what to send when nothing new came: a heartbeat when due; end a long outage."""
        now = time.monotonic()
        if self.outage_since is not None and now - self.outage_since >= self.give_up_after:
            self.done = True
            return []
        if now - self.last_sent >= self.heartbeat:
            self.last_sent = now
            return [HEARTBEAT]
        return []


class StreamResponse:
    """A Server-Sent Events answer: send ``status`` and ``headers``, then iterate the frames.

    ``status`` is what verify answered at the start (200, or 400/404/500/503 for a stream that is
    only one error frame). After the opening frame, the stream follows ``job`` on
    :attr:`feed` and turns each new outcome into a verify answer with ``answer``. Iterate once:
    ``for`` blocks between changes, ``async for`` does not.
    """

    headers: Mapping[str, str] = EVENT_STREAM_HEADERS
    #: The change feed to follow; ``None`` (the default): the process's shared feed polling
    #: every ``interval`` seconds (:func:`immortus.web.feed.feed_for`). Set before iterating.
    feed: ChangeFeed | None = None

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
        self._watch: _Watch | None = None
        if first.status != 200:
            self._opening = error_frame(first)
        else:
            self._opening = data_frame(first)
            if first.body.get("completed") is not True:
                self._watch = _Watch(first, heartbeat=heartbeat, give_up_after=give_up_after)

    def _changes(self) -> ChangeFeed:
        return self.feed or feed_for(self._interval)

    def __iter__(self) -> Iterator[bytes]:
        yield self._opening
        watch = self._watch
        if watch is None:
            return
        with self._changes().subscribe(*self.job) as changes:
            while not watch.done:
                if changes.next_change(watch.patience()):
                    yield from watch.feed(self._answer(changes.take()))
                else:
                    yield from watch.idle()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._opening
        watch = self._watch
        if watch is None:
            return
        loop = asyncio.get_running_loop()
        with self._changes().subscribe(*self.job, loop=loop) as changes:
            while not watch.done:
                if await changes.anext_change(watch.patience()):
                    frames = watch.feed(self._answer(changes.take()))
                else:
                    frames = watch.idle()
                for frame in frames:
                    yield frame

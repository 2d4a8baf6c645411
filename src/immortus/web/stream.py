"""Server-Sent Events: watch one job and push its verify body each time it changes.

A stream is opened by :meth:`immortus.web.Verifier.stream` (or ``astream``), which answers the
first request exactly as verify would. Refused (400, 404) or failed (500, 503) at the start, the
stream is one ``event: error`` frame carrying verify's body, with verify's status code. Accepted,
it is:

- one ``data: {body}`` frame now, and one more each time the body changes;
- a ``: heartbeat`` comment when nothing has been sent for ``heartbeat`` seconds (checked at each
  poll), so proxies keep the connection open;
- the end, right after a frame whose body is ``completed``.

While the store is unreachable the stream sends one ``event: error`` frame with the 503 body,
keeps heart-beating and polls with exponential back-off (up to 10 s between polls); when the
store answers again the current body is sent whether or not it changed. After ``give_up_after``
seconds of continuous outage (60 by default) the stream ends; the JavaScript client then falls
back to polling. A 404 (the record expired) or a 500 (the strategy broke) mid-stream sends one
``event: error`` frame and ends.

A :class:`StreamResponse` is iterated once, with ``for`` in a WSGI server (polls block the
thread) or ``async for`` in an ASGI one (polls run in a worker thread).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Final

from immortus.web.responses import EVENT_STREAM_HEADERS, WebResponse

__all__ = ["HEARTBEAT", "StreamResponse", "data_frame", "error_frame"]

#: The comment frame sent when nothing else was sent for a while.
HEARTBEAT: Final = b": heartbeat\n\n"
#: Longest pause between two polls while the store is unreachable.
MAX_BACKOFF: Final = 10.0


def data_frame(response: WebResponse) -> bytes:
    """Return the SSE frame carrying a verify body (compact JSON holds no newline)."""
    return b"data: " + response.content() + b"\n\n"


def error_frame(response: WebResponse) -> bytes:
    """Return the ``event: error`` frame carrying an error (or unknown-job) body."""
    return b"event: error\ndata: " + response.content() + b"\n\n"


class _Watch:
    """The stream's decisions, free of I/O: what to send after each poll, and when to poll."""

    def __init__(
        self, first: WebResponse, *, interval: float, heartbeat: float, give_up_after: float
    ) -> None:
        self.interval = interval
        self.heartbeat = heartbeat
        self.give_up_after = give_up_after
        self.last = first.content()
        self.last_sent = time.monotonic()
        self.outage_since: float | None = None
        self.failures = 0
        self.done = False

    def delay(self) -> float:
        """Seconds to wait before the next poll."""
        if not self.failures:
            return self.interval
        backoff = self.interval * float(2 ** min(self.failures, 10))
        return min(backoff, max(self.interval, min(MAX_BACKOFF, self.heartbeat)))

    def feed(self, response: WebResponse) -> list[bytes]:
        """Return the frames to send after a poll answered ``response``."""
        now = time.monotonic()
        if response.status == 200:
            recovered = self.outage_since is not None
            self.outage_since, self.failures = None, 0
            content = response.content()
            if content != self.last or recovered:
                self.last, self.last_sent = content, now
                self.done = response.body.get("completed") is True
                return [data_frame(response)]
        elif response.status == 503:
            self.failures += 1
            if self.outage_since is None:
                self.outage_since, self.last_sent = now, now
                return [error_frame(response)]
            if now - self.outage_since >= self.give_up_after:
                self.done = True
                return []
        else:
            self.done = True
            return [error_frame(response)]
        if now - self.last_sent >= self.heartbeat:
            self.last_sent = now
            return [HEARTBEAT]
        return []


class StreamResponse:
    """A Server-Sent Events answer: send ``status`` and ``headers``, then iterate the frames.

    ``status`` is what verify answered at the start (200, or 400/404/500/503 for a stream that is
    only one error frame). Iterate once: ``for`` blocks between polls, ``async for`` does not.
    """

    headers: Mapping[str, str] = EVENT_STREAM_HEADERS

    def __init__(
        self,
        first: WebResponse,
        fetch: Callable[[], WebResponse],
        *,
        interval: float = 0.5,
        heartbeat: float = 15.0,
        give_up_after: float = 60.0,
    ) -> None:
        self.status = first.status
        self._fetch = fetch
        self._watch: _Watch | None = None
        if first.status != 200:
            self._opening = error_frame(first)
        else:
            self._opening = data_frame(first)
            if first.body.get("completed") is not True:
                self._watch = _Watch(
                    first, interval=interval, heartbeat=heartbeat, give_up_after=give_up_after
                )

    def __iter__(self) -> Iterator[bytes]:
        yield self._opening
        watch = self._watch
        while watch is not None and not watch.done:
            time.sleep(watch.delay())
            yield from watch.feed(self._fetch())

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._opening
        watch = self._watch
        while watch is not None and not watch.done:
            await asyncio.sleep(watch.delay())
            for frame in watch.feed(await asyncio.to_thread(self._fetch)):
                yield frame

"""One Server-Sent Events stream for every job of a page: ``POST {prefix}/stream``.

The request body is a batch body (``{"jobs": [{"job_id", "job_class"?, "token"?}, ...]}``,
see :mod:`.batch`); a refusal of the whole request (a malformed body, a wrong content type, the
routes not secured, the stream limits) is an ordinary JSON answer. Otherwise the answer is a
``200 text/event-stream`` of:

- ``event: job`` frames, ``data: {"index": i, "code": c, "body": {...}}``: ``index`` is the
  job's position in the request's ``jobs``, ``code`` and ``body`` what a verify of that job
  would answer. Every job gets one frame at once, then one more each time its answer changes.
  A job ends after a ``completed`` body, a 404 (an unknown job, a bad token, an untracked
  class: indistinguishable) or a 500. A 503 (the store cannot be reached) is sent once; the
  job is then followed until the store answers again (its current body is sent);
- ``event: end`` with ``data: {}`` once every job has ended, and then the stream closes;
- a ``: heartbeat`` comment when nothing was sent for a while;
- at the stream's lifetime (set by :func:`immortus.web.stream_limits.admit`), or once a job's
  store has been unreachable for ``give_up_after`` seconds, a ``retry:`` field and the close,
  *without* ``event: end``: the client posts the jobs that have not ended again (or polls).

Every job is followed on the shared change feed (:mod:`.feed`), one subscription each, all
waited on together: a page's jobs cost one connection, one slot of the stream limits and no
poll of their own.

An item may be a group (``{"group_id", "token"}``, see :mod:`.groups`): its frames carry the
group's aggregate body. A group is read every :data:`GROUP_INTERVAL` seconds (one store read,
whatever its size) and its frame sent when the body changed; it ends once its ``status`` is a
completed state, or after a 404 or 500, as a job does.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Final

from immortus.web.feed import DEFAULT_TICK, JobRef, Outcome, SubscriptionGroup
from immortus.web.groups import group_ended
from immortus.web.responses import WebResponse
from immortus.web.stream import HEARTBEAT, StreamResponse, retry_frame

__all__ = ["END_FRAME", "GROUP_INTERVAL", "MultiStreamResponse", "job_frame"]

#: The frame sent once every job has ended.
END_FRAME: Final = b"event: end\ndata: {}\n\n"
#: Seconds between two reads of each group a stream follows.
GROUP_INTERVAL: Final = 0.2


def job_frame(index: int, answer: WebResponse) -> bytes:
    """Return the ``event: job`` frame of the job at ``index`` answered ``answer``."""
    head = b'event: job\ndata: {"index":%d,"code":%d,"body":' % (index, answer.status)
    return head + answer.content() + b"}\n\n"


class _Job:
    """One job's decisions, free of I/O: which answers are news, and whether it has ended."""

    __slots__ = ("done", "group", "last", "outage_since")

    def __init__(self, first: WebResponse, now: float, *, group: bool = False) -> None:
        self.last = b""
        self.outage_since: float | None = None
        self.done = False
        self.group = group
        self.news(first, now)

    def news(self, answer: WebResponse, now: float) -> bool:
        """Take the job's answer ``answer``; return whether it is sent."""
        if answer.status == 200:
            recovered = self.outage_since is not None
            self.outage_since = None
            content = answer.content()
            if content == self.last and not recovered:
                return False
            self.last = content
            body = answer.body
            self.done = group_ended(body) if self.group else body.get("completed") is True
            return True
        if answer.status == 503:
            if self.outage_since is not None:
                return False
            self.outage_since = now
            return True
        self.done = True  # 400, 404, 500: nothing more will be learnt
        return True


class MultiStreamResponse(StreamResponse):
    """The event stream of several jobs: send ``status`` and ``headers``, then the frames.

    ``firsts`` are the verify answers of the items now (in the request's order); ``jobs``
    the job of each item (``None`` for a group), and ``answer`` turns the change feed's outcome
    for the job at an index into its verify answer. ``groups`` maps the index of each group to
    the function that reads its answer now (it must not raise). Bounded and iterated like a
    :class:`~immortus.web.stream.StreamResponse` (``for`` or ``async for``, once;
    :meth:`close` gives the slot back).
    """

    def __init__(
        self,
        firsts: Sequence[WebResponse],
        jobs: Sequence[JobRef | None],
        answer: Callable[[int, Outcome], WebResponse],
        *,
        groups: Mapping[int, Callable[[], WebResponse]] | None = None,
        interval: float = DEFAULT_TICK,
        heartbeat: float = 15.0,
        give_up_after: float = 60.0,
    ) -> None:
        super().__init__(WebResponse(200, {}), ("", None), lambda _: WebResponse(200, {}))
        self._interval = interval
        self._heartbeat = heartbeat
        self._give_up_after = give_up_after
        self._refs = list(jobs)
        self._answer_at = answer
        self._groups = dict(groups or {})
        now = time.monotonic()
        self._next_read = now + GROUP_INTERVAL
        self._jobs = [
            _Job(first, now, group=index in self._groups) for index, first in enumerate(firsts)
        ]
        opening = [job_frame(index, first) for index, first in enumerate(firsts)]
        self.lasting = not all(job.done for job in self._jobs)
        self._opening = b"".join(opening if self.lasting else [*opening, END_FRAME])
        self._finished = not self.lasting
        self._last_sent = now
        self._ends: float | None = None
        self._following: list[int] = []

    def _start(self, heartbeat: float) -> list[JobRef]:
        """Fix the pace at the first wait; return the jobs to follow (their order is kept)."""
        self._beat = heartbeat
        if self.lifetime is not None:  # ends between 90 and 100 % of it, like single streams
            share = random.uniform(0.9, 1.0)  # noqa: S311  # spreading, not secrecy
            self._ends = self._last_sent + self.lifetime * share
        self._following = [
            index
            for index, job in enumerate(self._jobs)
            if not job.done and index not in self._groups
        ]
        return [ref for index in self._following if (ref := self._refs[index]) is not None]

    def _patience(self) -> float:
        """Seconds to wait for news before :meth:`_step` has something to do without any."""
        now = time.monotonic()
        wait = self._last_sent + self._beat - now
        if self._ends is not None:
            wait = min(wait, self._ends - now)
        if self._open_groups():
            wait = min(wait, self._next_read - now)
        for index in self._following:
            since = self._jobs[index].outage_since
            if since is not None and not self._jobs[index].done:
                wait = min(wait, since + self._give_up_after - now)
        return max(0.0, wait)

    def _open_groups(self) -> list[int]:
        """The indices of the groups that have not ended."""
        return [index for index in self._groups if not self._jobs[index].done]

    def _groups_due(self) -> bool:
        """Whether the groups are to be read now."""
        return time.monotonic() >= self._next_read and bool(self._open_groups())

    def _read_groups(self) -> list[tuple[int, WebResponse]]:
        """Read every group that has not ended (blocking); return their answers."""
        self._next_read = time.monotonic() + GROUP_INTERVAL
        return [(index, self._groups[index]()) for index in self._open_groups()]

    def _step(
        self, group: SubscriptionGroup, news: bool, read: Sequence[tuple[int, WebResponse]] = ()
    ) -> bytes:
        """Return what to send now (possibly nothing): news, the end, ``retry:``, a heartbeat.

        ``read`` holds the groups' answers read since the last step.
        """
        now = time.monotonic()
        out: list[bytes] = []
        for index, answer in read:
            if self._jobs[index].news(answer, now):
                out.append(job_frame(index, answer))
        for member in group.changed() if news else ():
            index = self._following[member]
            job = self._jobs[index]
            answer = self._answer_at(index, group.members[member].take())
            if job.news(answer, now):
                out.append(job_frame(index, answer))
            if job.done:
                group.drop(member)
        if all(job.done for job in self._jobs):
            out.append(END_FRAME)
            self._finished = True
        elif (self._ends is not None and now >= self._ends) or self._given_up(now):
            out.append(retry_frame(self.reconnect))
            self._finished = True
        elif not out and now - self._last_sent >= self._beat:
            out.append(HEARTBEAT)
        if out:
            self._last_sent = now
        return b"".join(out)

    def _given_up(self, now: float) -> bool:
        """Whether a job's store has been unreachable for ``give_up_after`` seconds."""
        return any(
            not job.done
            and job.outage_since is not None
            and now - job.outage_since >= self._give_up_after
            for job in self._jobs
        )

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield self._opening
            if self._finished:
                return
            jobs = self._start(min(self._heartbeat, self.keepalive))
            with SubscriptionGroup(self._changes(), jobs) as group:
                while not self._finished:
                    news = group.next_change(self._patience())
                    read = self._read_groups() if self._groups_due() else ()
                    frames = self._step(group, news, read)
                    if frames:
                        yield frames
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield self._opening
            if self._finished:
                return
            jobs = self._start(self._heartbeat)
            loop = asyncio.get_running_loop()
            with SubscriptionGroup(self._changes(), jobs, loop=loop) as group:
                while not self._finished:
                    news = await group.anext_change(self._patience())
                    read = await asyncio.to_thread(self._read_groups) if self._groups_due() else ()
                    frames = self._step(group, news, read)
                    if frames:
                        yield frames
        finally:
            self.close()

"""Bounded streams in the web core: admission, per-client limits, lifetime, keep-alive, bookkeeping.

The servers' side (gunicorn, uvicorn) is in ``test_stream_limits_servers.py``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from immortus import lifecycle
from immortus.exceptions import ConfigurationError
from immortus.web import StreamResponse, Verifier
from immortus.web.django.settings import immortus_settings, stream_limits
from immortus.web.feed import feed_for
from immortus.web.responses import WebResponse
from immortus.web.stream import HEARTBEAT, RECONNECT, retry_frame
from immortus.web.stream_limits import (
    ASGI_LIMITS,
    WSGI_LIMITS,
    Refused,
    Slot,
    StreamLimiter,
    StreamLimits,
    admit,
)
from tests.web.conftest import FaultyStore

TICK = 0.0061  # a feed of these tests' own: feed_for(TICK)
DEADLINE = 10.0  # generous: the machine may be loaded
LIMITS = StreamLimits.asgi(max_open=3, per_token=1, per_subject=2)


@pytest.fixture
def verifier(store: FaultyStore) -> Verifier:
    for job_id in ("job-1", "job-2", "job-3", "job-4"):
        lifecycle.job_started(job_id)
    return Verifier(open_endpoints=True)


def lasting(verifier: Verifier, job_id: str = "job-1", heartbeat: float = 15.0) -> StreamResponse:
    """A stream of a running job: it stays open after its first frame."""
    stream = verifier.stream(job_id, interval=TICK, heartbeat=heartbeat)
    assert stream.lasting
    return stream


def in_thread(frames: Iterator[bytes], until: int) -> list[bytes]:
    """Take frames in a thread until ``until`` are in (or the stream ends); fail on a hang."""
    taken: list[bytes] = []

    def take() -> None:
        for frame in frames:
            taken.append(frame)
            if len(taken) == until:
                return

    worker = threading.Thread(target=take, daemon=True)
    worker.start()
    worker.join(DEADLINE)
    assert not worker.is_alive(), f"the stream hung after {taken!r}"
    return taken


# -- admission -------------------------------------------------------------------------------


def test_past_the_process_limit_a_stream_is_a_503_with_retry_after(verifier: Verifier) -> None:
    limiter = StreamLimiter()
    admitted = [admit(lasting(verifier, f"job-{n}"), LIMITS, limiter=limiter) for n in (1, 2, 3)]
    assert [stream.status for stream in admitted] == [200, 200, 200]
    assert limiter.open == 3
    refused = admit(lasting(verifier, "job-4"), LIMITS, limiter=limiter)
    assert refused.status == 503
    assert refused.headers["Content-Type"] == "application/json"
    assert refused.headers["Cache-Control"] == "no-store"
    assert refused.headers["Retry-After"] == str(LIMITS.retry_after)
    [body] = list(refused)
    error = json.loads(body)
    assert error["job_id"] == "job-4"
    assert error["error"]["type"] == "TooManyStreams"
    assert limiter.open == 3
    admitted[0].close()
    assert admit(lasting(verifier, "job-4"), LIMITS, limiter=limiter).status == 200


def test_past_a_token_or_subject_limit_a_stream_is_a_429(verifier: Verifier) -> None:
    limiter = StreamLimiter()
    kept = []  # a stream dropped gives its slot back: these stay open

    def opened(token: str | None, subject: str | None) -> StreamResponse:
        stream = admit(lasting(verifier), LIMITS, token=token, subject=subject, limiter=limiter)
        kept.append(stream)
        return stream

    assert opened("t1", "ann").status == 200
    same_token = opened("t1", "bob")
    assert (same_token.status, same_token.headers["Retry-After"]) == (429, "5")
    assert json.loads(next(iter(same_token)))["error"]["type"] == "TooManyStreams"
    assert opened("t2", "ann").status == 200
    assert opened("t3", "ann").status == 429
    held = (limiter.open, limiter.held(subject="ann"), limiter.held(token="t1"))  # noqa: S106
    assert held == (2, 2, 1)
    # No token, no subject: only the process limit counts.
    assert opened(None, None).status == 200
    assert opened(None, None).status == 503


def test_a_one_frame_stream_takes_no_slot(store: FaultyStore, verifier: Verifier) -> None:
    limiter = StreamLimiter()
    full = StreamLimits.wsgi(max_open=0)  # every lasting stream is refused
    lifecycle.job_finished("job-2")
    for stream in (
        verifier.stream("job-2"),  # completed
        verifier.stream("nobody"),  # 404
        verifier.stream(""),  # 400
    ):
        assert admit(stream, full, limiter=limiter) is stream
        assert len(list(stream)) == 1
    assert admit(lasting(verifier), full, limiter=limiter).status == 503
    assert limiter.open == 0


def test_a_stream_gives_its_slot_back_however_it_ends(verifier: Verifier) -> None:
    limiter = StreamLimiter()
    closed = admit(lasting(verifier), LIMITS, limiter=limiter)  # never iterated, closed
    dropped = admit(lasting(verifier), LIMITS, limiter=limiter)  # never iterated nor closed
    started = admit(lasting(verifier), LIMITS, limiter=limiter)  # closed mid-stream
    assert limiter.open == 3
    closed.close()
    closed.close()
    del dropped
    gc.collect()
    assert limiter.open == 1
    frames = started.frames()
    assert next(iter(frames)).startswith(b"data: ")
    frames.close()  # what a WSGI server does when the client left
    assert limiter.open == 0


def test_a_stream_ending_gives_its_slot_back_and_leaves_the_feed(
    store: FaultyStore, verifier: Verifier
) -> None:
    limiter = StreamLimiter()
    stream = admit(lasting(verifier), LIMITS, limiter=limiter)

    async def follow() -> list[bytes]:
        frames = []
        async for frame in stream.aframes():
            frames.append(frame)
            lifecycle.job_finished("job-1")
        return frames

    frames = asyncio.run(asyncio.wait_for(follow(), DEADLINE))
    assert len(frames) == 2
    assert limiter.open == 0
    assert feed_for(TICK).subscribers == 0


# -- lifetime and keep-alive -----------------------------------------------------------------


@pytest.mark.parametrize("iteration", ["for", "async for"])
def test_a_stream_ends_after_its_lifetime_with_a_retry_field(
    verifier: Verifier, iteration: str
) -> None:
    limiter = StreamLimiter()
    limits = StreamLimits.asgi(lifetime=0.05, reconnect=1.5)
    stream = admit(lasting(verifier, heartbeat=3600), limits, limiter=limiter)
    if iteration == "for":
        frames = in_thread(iter(stream), until=10)
    else:

        async def follow() -> list[bytes]:
            return [frame async for frame in stream]

        frames = asyncio.run(asyncio.wait_for(follow(), DEADLINE))
    assert frames[0].startswith(b"data: ")
    assert frames[1:] == [b"retry: 1500\n\n"]
    assert limiter.open == 0
    assert feed_for(TICK).subscribers == 0


def test_the_lifetime_ends_a_stream_whose_job_changes_all_the_time(verifier: Verifier) -> None:
    stream = lasting(verifier, heartbeat=3600)
    stream.lifetime = 0.05
    progress = iter(range(1, 1_000_000))

    async def follow() -> list[bytes]:
        frames = []
        async for frame in stream:
            frames.append(frame)
            lifecycle.job_meta("job-1", {"step": next(progress)})
        return frames

    frames = asyncio.run(asyncio.wait_for(follow(), DEADLINE))
    assert frames[-1] == retry_frame(RECONNECT)
    assert all(frame.startswith(b"data: ") for frame in frames[:-1])


def test_under_for_a_silent_stream_writes_every_keepalive(verifier: Verifier) -> None:
    stream = lasting(verifier, heartbeat=3600)  # without keep-alive: one write an hour
    stream.keepalive = 0.01
    frames = in_thread(iter(stream), until=4)
    assert frames[1:] == [HEARTBEAT] * 3


def test_the_keepalive_is_for_wsgi_only(verifier: Verifier) -> None:
    stream = lasting(verifier, heartbeat=3600)
    stream.keepalive = 0.001

    async def follow() -> list[bytes]:
        frames = []
        async for frame in stream:
            frames.append(frame)
            if len(frames) == 1:
                await asyncio.sleep(0.05)  # fifty keep-alives' worth of silence
                lifecycle.job_finished("job-1")
        return frames

    frames = asyncio.run(asyncio.wait_for(follow(), DEADLINE))
    assert HEARTBEAT not in frames
    assert len(frames) == 2


# -- settings --------------------------------------------------------------------------------


def test_the_defaults_leave_threads_to_other_requests() -> None:
    assert (WSGI_LIMITS.max_open, WSGI_LIMITS.per_token, WSGI_LIMITS.per_subject) == (2, 1, 1)
    assert (ASGI_LIMITS.max_open, ASGI_LIMITS.per_token, ASGI_LIMITS.per_subject) == (256, 2, 8)
    assert WSGI_LIMITS.keepalive <= 0.5
    assert StreamLimits.wsgi(max_open=8) == StreamLimits(**{**vars_of(WSGI_LIMITS), "max_open": 8})


def vars_of(limits: StreamLimits) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in limits.__dataclass_fields__}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_open": -1}, "max_open must be a whole number from 0"),
        ({"per_token": 1.5}, "per_token must be a whole number"),
        ({"lifetime": 0}, "lifetime must be > 0"),
        ({"keepalive": float("inf")}, "keepalive must be > 0"),
        ({"reconnect": True}, "reconnect must be a number of seconds"),
        ({"max_streams": 3}, "unknown setting 'max_streams'"),
    ],
)
def test_unusable_limits_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        StreamLimits.wsgi(**changes)


def test_django_reads_the_streams_key_of_its_setting() -> None:
    key = "a Django SECRET_KEY"
    source = SimpleNamespace(SECRET_KEY=key, IMMORTUS={"streams": {"max_open": 8}})
    assert "streams" not in immortus_settings(source)
    assert stream_limits(asgi=False, source=source) == StreamLimits.wsgi(max_open=8)
    assert stream_limits(asgi=True, source=source) == StreamLimits.asgi(max_open=8)
    assert stream_limits(asgi=True, source=SimpleNamespace()) == ASGI_LIMITS
    for wrong in ({"max_opn": 8}, {"lifetime": -1}, [("max_open", 8)]):
        source.IMMORTUS = {"streams": wrong}
        with pytest.raises(ImproperlyConfigured, match=r"IMMORTUS\['streams'\]"):
            immortus_settings(source)


# -- bookkeeping -----------------------------------------------------------------------------

TOKENS = st.sampled_from([None, "t1", "t2"])
SUBJECTS = st.sampled_from([None, "ann", "bob"])


class Bookkeeping(RuleBasedStateMachine):
    """Random interleavings of streams opened, closed, ended, dropped and a fork's reset.

    A model counts what should be held; the limiter must agree after every step, never go
    below zero or over a limit, and keep no key whose count is zero.
    """

    streams = Bundle("streams")

    def __init__(self) -> None:
        super().__init__()
        self.limiter = StreamLimiter()
        self.limits = StreamLimits.wsgi(max_open=3, per_token=2, per_subject=2)
        self.held: dict[int, tuple[str | None, str | None]] = {}  # id(slot) -> (token, subject)

    def count(self, token: str | None = None, subject: str | None = None) -> int:
        return sum(
            1
            for held_token, held_subject in self.held.values()
            if (token is not None and held_token == token)
            or (subject is not None and held_subject == subject)
        )

    @rule(target=streams, token=TOKENS, subject=SUBJECTS)
    def open(self, token: str | None, subject: str | None) -> Any:
        taken = self.limiter.acquire(self.limits, token=token, subject=subject)
        if len(self.held) >= self.limits.max_open:
            assert isinstance(taken, Refused)
            assert taken.status == 503
        elif (token is not None and self.count(token=token) >= self.limits.per_token) or (
            subject is not None and self.count(subject=subject) >= self.limits.per_subject
        ):
            assert isinstance(taken, Refused)
            assert taken.status == 429
        else:
            assert isinstance(taken, Slot)
            self.held[id(taken)] = (token, subject)
        return taken

    def _release(self, taken: Slot | Refused) -> None:
        if isinstance(taken, Slot):
            taken.release()
            self.held.pop(id(taken), None)

    @rule(taken=streams)
    def close_twice(self, taken: Slot | Refused) -> None:
        self._release(taken)
        self._release(taken)

    @rule(taken=consumes(streams))
    def end(self, taken: Slot | Refused) -> None:
        self._release(taken)

    @rule(taken=consumes(streams))
    def drop(self, taken: Slot | Refused) -> None:
        """The stream is garbage-collected: its finalizer releases the slot."""
        if isinstance(taken, Slot):
            stream = StreamResponse.plain(WebResponse(200, {"job_id": "j"}))
            stream.hold(taken)
            del stream
            self.held.pop(id(taken), None)

    @rule()
    def fork(self) -> None:
        """A forked child: every slot of the parent is forgotten, and stays forgotten."""
        self.limiter.reset()
        self.held.clear()

    @invariant()
    def agrees(self) -> None:
        assert 0 <= self.limiter.open == len(self.held) <= self.limits.max_open
        for token in ("t1", "t2"):
            assert self.limiter.held(token=token) == self.count(token=token)
        for subject in ("ann", "bob"):
            assert self.limiter.held(subject=subject) == self.count(subject=subject)
        keys = {("t", t) for t, _ in self.held.values() if t} | {
            ("s", s) for _, s in self.held.values() if s
        }
        assert self.limiter.keys() == len(keys)


TestBookkeeping = Bookkeeping.TestCase
TestBookkeeping.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


def test_threads_racing_never_overfill_nor_leak() -> None:
    limiter = StreamLimiter()
    limits = StreamLimits.wsgi(max_open=3, per_subject=1, per_token=1)
    seen_over: list[int] = []
    start = threading.Barrier(8)

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        held: list[Slot] = []
        for _ in range(2000):
            if held and rng.random() < 0.5:
                held.pop(rng.randrange(len(held))).release()
                continue
            taken = limiter.acquire(
                limits, token=rng.choice([None, "t1"]), subject=rng.choice([None, "a", "b"])
            )
            if isinstance(taken, Slot):
                held.append(taken)
            if limiter.open > limits.max_open or limiter.held(subject="a") > 1:
                seen_over.append(limiter.open)
        for slot in held:
            slot.release()

    workers = [threading.Thread(target=churn, args=(seed,)) for seed in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DEADLINE * 3)
    assert seen_over == []
    assert (limiter.open, limiter.keys()) == (0, 0)

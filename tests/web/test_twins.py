"""The async twins of the verifier's blocking answers: the same call, in a worker thread."""

from __future__ import annotations

import asyncio
import inspect
import threading

from immortus.web import Verifier
from immortus.web.twins import in_thread


class _Counter:
    """A blocking method and its twin, recording the thread each call ran in."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def count(self, start: int, *, step: int = 1) -> int:
        """Count one step from ``start``."""
        self.threads.append(threading.get_ident())
        return start + step

    acount = in_thread(count)


def test_a_twin_answers_as_its_method_does_in_a_worker_thread() -> None:
    counter = _Counter()

    async def ask() -> tuple[int, int]:
        return await counter.acount(1, step=2), threading.get_ident()

    answer, loop_thread = asyncio.run(ask())

    assert answer == counter.count(1, step=2) == 3
    assert counter.threads[0] != loop_thread


def test_a_twin_is_named_after_its_method_and_takes_its_arguments() -> None:
    assert _Counter.acount.__name__ == "acount"
    assert _Counter.acount.__qualname__ == "_Counter.acount"
    assert inspect.iscoroutinefunction(_Counter.acount)
    assert inspect.signature(_Counter.acount) == inspect.signature(_Counter.count)


def test_the_verifier_twins_are_coroutines_named_after_their_methods() -> None:
    for name in ("verify_batch", "stream_jobs", "cancel"):
        twin = getattr(Verifier, f"a{name}")
        assert inspect.iscoroutinefunction(twin), name
        assert twin.__name__ == f"a{name}"
        assert inspect.signature(twin) == inspect.signature(getattr(Verifier, name))

"""One job, every surface: what each place a user can ask answers about it.

A user can ask about a job from Python (:func:`immortus.status` and its async twin), from a page
(verify with and without its class, the batch, the first frame of a stream and of a multi-job
stream, and the async twins the ASGI routes use) and from a shell (``immortus status
--json``). :func:`answers` asks every one of them in this process, with tokens on as in
production, and :func:`assert_one_answer` checks they agree.

A job's strategy can be chosen three ways (its declared strategy, the global one, or the one
inferred from its queue); :func:`reading_as` sets this process up to read a job the way of one
:data:`Style`, and :func:`one_answer_in_every_style` asks every surface under each of them and
checks that they all agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Literal

import immortus
from immortus import registry
from immortus.cli import main as cli_main
from immortus.query import astatus
from immortus.web.core import Verifier

__all__ = [
    "STABLE_KEYS",
    "STYLES",
    "UNTRACKED_CLASS",
    "Style",
    "answers",
    "assert_one_answer",
    "one_answer_in_every_style",
    "reading_as",
]

#: How the reading process finds a job's strategy: the queue it declares (``inferred``), a
#: strategy declared on the job (``inline``), the global strategy asked with the job's class
#: (``global``) or with a class nobody tracks (``global, untracked class``).
Style = Literal["inferred", "inline", "global", "global, untracked class"]
STYLES: Final[tuple[Style, ...]] = ("inferred", "inline", "global", "global, untracked class")
#: The class a page asks with under ``global, untracked class``: tracked by nobody.
UNTRACKED_CLASS: Final = "surfaces.NobodyTracksThis"

_KEY: Final = "surfaces-test-key"
#: The keys that do not move while a job runs: what running jobs are compared on.
STABLE_KEYS: Final = ("job_id", "status", "completed", "success", "attempts", "enqueued_at")


def _frame_body(frame: bytes) -> dict[str, Any]:
    data = next(line for line in frame.decode().splitlines() if line.startswith("data: "))
    body: dict[str, Any] = json.loads(data.removeprefix("data: "))
    return body


def _first_frame(stream: Iterable[bytes]) -> bytes:
    frames = iter(stream)
    try:
        return next(frames)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


async def _async_answers(
    verifier: Verifier, job_id: str, job_class: str | None, token: str | None
) -> dict[str, dict[str, Any]]:
    """What the async twins answer (the ASGI routes'), each asked on an event loop."""
    stream = await verifier.astream(job_id, job_class, token)
    frames = stream.aframes()
    try:
        first = await anext(aiter(frames))
    finally:
        frames.close()
    return {
        "immortus.astatus": (await astatus(job_id, job_class)).to_dict(),
        "averify": dict((await verifier.averify(job_id, job_class, token)).body),
        "astream, first frame": _frame_body(first),
    }


def _cli(job_id: str, job_class: str | None) -> dict[str, Any]:
    out = io.StringIO()
    store = immortus.get_config().store
    where = ["--store", store] if isinstance(store, str) else []
    argv = [*where, "status", "--json", job_id, *(["--job-class", job_class] if job_class else [])]
    with contextlib.redirect_stdout(out):
        cli_main(argv)
    body: dict[str, Any] = json.loads(out.getvalue())
    return body


def answers(
    job_id: str, job_class: str | None, *, classless: bool = True
) -> dict[str, dict[str, Any]]:
    """Return the body every surface gives for ``job_id`` asked under ``job_class``.

    The class-less surfaces are asked too when ``job_class`` is given (unless ``classless`` is
    false): a page that lost the class must not learn less than one that kept it.
    """
    verifier = Verifier(secret_key=_KEY)
    token = verifier.token_for(job_id, job_class)
    found: dict[str, dict[str, Any]] = {
        "immortus.status": immortus.status(job_id, job_class).to_dict(),
        "verify": dict(verifier.verify(job_id, job_class, token).body),
        "cli status --json": _cli(job_id, job_class),
    }
    batch = json.dumps({"jobs": [{"job_id": job_id, "job_class": job_class, "token": token}]})
    reply = verifier.verify_batch(batch, content_type="application/json")
    found["batch"] = json.loads(reply.content())["jobs"][0]
    found["stream, first frame"] = _frame_body(
        _first_frame(verifier.stream(job_id, job_class, token))
    )
    multi = verifier.stream_jobs(batch, content_type="application/json")
    found["multi-job stream, first frame"] = _frame_body(_first_frame(multi))["body"]
    found.update(asyncio.run(_async_answers(verifier, job_id, job_class, token)))
    if job_class is not None and classless:
        bare = verifier.token_for(job_id, None)
        found["immortus.status, no class"] = immortus.status(job_id).to_dict()
        found["verify, no class"] = dict(verifier.verify(job_id, None, bare).body)
    return found


def _view(
    body: dict[str, Any], keys: tuple[str, ...] | None, ignore: Iterable[str]
) -> dict[str, Any]:
    """``body`` (or its ``keys``) without the job class and the keys in ``ignore``."""
    skipped = {"job_class", *ignore}
    picked = body if keys is None else {key: body.get(key) for key in keys}
    return {key: value for key, value in picked.items() if key not in skipped}


def _assert_same(
    found: dict[str, dict[str, Any]], keys: Iterable[str] | None, ignore: Iterable[str] = ()
) -> None:
    """Assert that every body in ``found`` is the same, but for the job class and ``ignore``."""
    chosen = tuple(keys) if keys is not None else None
    reference_name, reference = next(iter(found.items()))
    for name, body in found.items():
        mine, theirs = _view(body, chosen, ignore), _view(reference, chosen, ignore)
        assert mine == theirs, (
            f"{name} answers differently from {reference_name}:\n"
            f"  {name}: {json.dumps(mine, sort_keys=True)}\n"
            f"  {reference_name}: {json.dumps(theirs, sort_keys=True)}"
        )


def assert_one_answer(
    found: dict[str, dict[str, Any]],
    keys: Iterable[str] | None = None,
    *,
    ignore: Iterable[str] = (),
) -> None:
    """Assert that every surface in ``found`` gave the same body (or the same ``keys`` of it).

    ``job_class`` is compared only between surfaces that were asked with a class.
    """
    _assert_same(found, keys, ignore)
    with_class = {
        name: body.get("job_class") for name, body in found.items() if "no class" not in name
    }
    assert len(set(with_class.values())) == 1, f"job_class differs: {with_class}"


@contextlib.contextmanager
def reading_as(style: Style, strategy: str, job_class: str) -> Iterator[str]:
    """Read ``job_class``'s jobs the way of ``style`` while the block runs; yield the class to ask.

    ``strategy`` is the strategy the job's queue infers (``"rq"``): under ``inline`` it is
    declared on the job instead (the worker, another process, is not affected), under the
    global styles it is ``immortus.configure(strategy=...)``. Restores what it changed.
    """
    if style == "inferred":
        yield job_class
    elif style == "inline":
        declared = registry.lookup(job_class)
        assert declared is not None, f"{job_class!r} is not tracked here"
        registry.unregister(job_class)
        registry.register(dataclasses.replace(declared, strategy=strategy))
        try:
            yield job_class
        finally:
            registry.unregister(job_class)
            registry.register(declared)
    else:
        kept = immortus.get_config().strategy
        immortus.configure(strategy=strategy)
        try:
            yield job_class if style == "global" else UNTRACKED_CLASS
        finally:
            immortus.configure(strategy=kept)


def one_answer_in_every_style(
    job_id: str,
    job_class: str,
    ask: Callable[[str, str, Style], dict[str, dict[str, Any]]],
    keys: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Assert that every surface answers the same under every :data:`Style`; return the answer.

    ``ask(job_id, job_class, style)`` returns :func:`answers` read the way of ``style`` (in
    this process with :func:`reading_as`, or in the process that reads, a web app's). Each
    style's surfaces must agree on the whole body (or on ``keys``), job class included; then
    the styles must agree with each other (on all but the job class, which the untracked style
    asks under another name).
    """
    chosen = tuple(keys) if keys is not None else None
    every: dict[str, dict[str, Any]] = {}
    for style in STYLES:
        found = ask(job_id, job_class, style)
        assert_one_answer(found, chosen)
        asked = UNTRACKED_CLASS if style == "global, untracked class" else job_class
        first = found["verify"]
        assert first.get("job_class") in {asked, job_class}, (style, first.get("job_class"))
        every.update({f"{style}: {name}": body for name, body in found.items()})
    _assert_same(every, chosen)
    return next(iter(every.values()))

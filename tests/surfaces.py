"""One job, every surface: what each place a user can ask answers about it.

A user can ask about a job from Python (:func:`immortus.status`), from a page (verify with and
without its class, the batch, the first frame of a stream) and from a shell (``immortus status
--json``). :func:`answers` asks every one of them in this process, with tokens on as in
production, and :func:`assert_one_answer` checks they agree.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable
from typing import Any, Final

import immortus
from immortus.cli import main as cli_main
from immortus.web.core import Verifier

__all__ = ["STABLE_KEYS", "answers", "assert_one_answer"]

_KEY: Final = "surfaces-test-key"
#: The keys that do not move while a job runs: what running jobs are compared on.
STABLE_KEYS: Final = ("job_id", "status", "completed", "success", "attempts", "enqueued_at")


def _frame_body(frame: bytes) -> dict[str, Any]:
    data = next(line for line in frame.decode().splitlines() if line.startswith("data: "))
    body: dict[str, Any] = json.loads(data.removeprefix("data: "))
    return body


def _cli(job_id: str, job_class: str | None) -> dict[str, Any]:
    out = io.StringIO()
    store = immortus.get_config().store
    where = ["--store", store] if isinstance(store, str) else []
    argv = [*where, "status", "--json", job_id, *(["--job-class", job_class] if job_class else [])]
    with contextlib.redirect_stdout(out):
        cli_main(argv)
    body: dict[str, Any] = json.loads(out.getvalue())
    return body


def answers(job_id: str, job_class: str | None) -> dict[str, dict[str, Any]]:
    """Return the body every surface gives for ``job_id`` asked under ``job_class``.

    The class-less surfaces are asked too when ``job_class`` is given: a page that lost the
    class must not learn less than one that kept it.
    """
    verifier = Verifier(secret_key=_KEY)
    token = verifier.token_for(job_id, job_class)
    found: dict[str, dict[str, Any]] = {
        "immortus.status": immortus.status(job_id, job_class).to_dict(),
        "verify": dict(verifier.verify(job_id, job_class, token).body),
        "cli status --json": _cli(job_id, job_class),
    }
    batch = {"jobs": [{"job_id": job_id, "job_class": job_class, "token": token}]}
    reply = verifier.verify_batch(json.dumps(batch), content_type="application/json")
    found["batch"] = json.loads(reply.content())["jobs"][0]
    stream = verifier.stream(job_id, job_class, token)
    frames = iter(stream)
    try:
        found["stream, first frame"] = _frame_body(next(frames))
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    if job_class is not None:
        bare = verifier.token_for(job_id, None)
        found["immortus.status, no class"] = immortus.status(job_id).to_dict()
        found["verify, no class"] = dict(verifier.verify(job_id, None, bare).body)
    return found


def assert_one_answer(
    found: dict[str, dict[str, Any]],
    keys: Iterable[str] | None = None,
    *,
    ignore: Iterable[str] = (),
) -> None:
    """Assert that every surface in ``found`` gave the same body (or the same ``keys`` of it).

    ``job_class`` is compared only between surfaces that were asked with a class.
    """
    skipped = {"job_class", *ignore}
    chosen = tuple(keys) if keys is not None else None

    def view(body: dict[str, Any]) -> dict[str, Any]:
        picked = body if chosen is None else {key: body.get(key) for key in chosen}
        return {key: value for key, value in picked.items() if key not in skipped}

    reference_name, reference = next(iter(found.items()))
    for name, body in found.items():
        assert view(body) == view(reference), (
            f"{name} answers differently from {reference_name}:\n"
            f"  {name}: {json.dumps(view(body), sort_keys=True)}\n"
            f"  {reference_name}: {json.dumps(view(reference), sort_keys=True)}"
        )
    with_class = {
        name: body.get("job_class") for name, body in found.items() if "no class" not in name
    }
    assert len(set(with_class.values())) == 1, f"job_class differs: {with_class}"

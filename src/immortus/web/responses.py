"""What the web core answers: status, headers and a JSON body, ready for any framework.

A framework adapter turns a :class:`WebResponse` into its own response with
``status``, ``headers`` and ``content()``, and nothing else.

:func:`job_answer` makes the 200 answer of a known job once per status object: a job polled
again and again while nothing happens to it is encoded once, not at every request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from immortus import runtime
from immortus.status import JobStatus

__all__ = [
    "EVENT_STREAM_HEADERS",
    "JSON_HEADERS",
    "MAX_KEPT_ANSWERS",
    "STORE_UNAVAILABLE",
    "WebResponse",
    "bad_request",
    "dump_json",
    "error_body",
    "job_answer",
    "method_not_allowed",
    "not_found",
    "rendered",
    "sanitise",
    "unknown_job",
    "unsupported_media_type",
]

#: Headers of every JSON answer: never cached (a status changes), never sniffed as HTML.
JSON_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Content-Type": "application/json",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
)
#: Headers of a Server-Sent Events stream; ``X-Accel-Buffering`` stops nginx from buffering it.
EVENT_STREAM_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
        "X-Content-Type-Options": "nosniff",
    }
)
#: The message of every 503: the store (or queue backend) cannot be reached.
STORE_UNAVAILABLE: Final = "the job store cannot be reached; try again later"
#: Longest piece of a request echoed back in an error body.
ECHO_LENGTH: Final = 100
#: Most answers :func:`job_answer` keeps; past it, it forgets them all and starts again.
MAX_KEPT_ANSWERS: Final = 1024


def dump_json(body: object) -> bytes:
    r"""Return ``body`` as compact UTF-8 JSON.

    A lone surrogate in a string (which UTF-8 cannot carry) is written as its ``\uXXXX``
    escape, which is what JSON calls it too.

    Raises:
        TypeError, ValueError: ``body`` holds something JSON cannot carry (objects, NaN).
    """
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class WebResponse:
    """One JSON answer: an adapter sends ``status``, ``headers`` and ``content()``.

    The body is encoded once, when the response is made (``encoded`` passes bytes already
    encoded from ``body``, as the batch does with its items').

    Raises:
        TypeError, ValueError: ``body`` cannot be encoded as JSON.
    """

    status: int
    body: Mapping[str, Any]
    #: A factory, not a plain default: a mapping proxy is no hashable default for Python 3.11.
    headers: Mapping[str, str] = field(default_factory=lambda: JSON_HEADERS)
    encoded: bytes | None = field(default=None, repr=False, compare=False, kw_only=True)

    def __post_init__(self) -> None:
        if self.encoded is None:
            object.__setattr__(self, "encoded", dump_json(self.body))

    def content(self) -> bytes:
        """Return the body as compact UTF-8 JSON bytes."""
        assert self.encoded is not None  # noqa: S101  # set by __post_init__
        return self.encoded


def sanitise(value: object) -> str | None:
    """Return a piece of a request fit to echo back: text, printable, at most 100 characters."""
    if not isinstance(value, str):
        return None
    text = value[:ECHO_LENGTH]
    return text if text.isprintable() else "".join(c if c.isprintable() else "\ufffd" for c in text)


def error_body(job_id: object, kind: str, message: str) -> dict[str, Any]:
    """Return an error body: ``{"job_id", "error": {"type", "message"}}``."""
    return {"job_id": sanitise(job_id), "error": {"type": kind, "message": message}}


def bad_request(job_id: object, message: str) -> WebResponse:
    """Return the 400 answer to malformed input, saying what was wrong with it."""
    return WebResponse(400, error_body(job_id, "InvalidInput", message))


def unsupported_media_type() -> WebResponse:
    """Return the 415 of a ``POST`` request that is not sent as ``application/json``."""
    message = "the request must be sent with Content-Type: application/json"
    return WebResponse(415, error_body(None, "UnsupportedMediaType", message))


def unknown_job(job_id: str, job_class: str | None) -> WebResponse:
    """Return the one 404 of an unknown job: an untracked class and a bad token look alike."""
    return WebResponse(404, JobStatus.unknown(job_id, job_class).to_dict())


def not_found(message: str = "no immortus route has this path") -> WebResponse:
    """Return the 404 of a path under the prefix that is no route (not an unknown job)."""
    return WebResponse(404, error_body(None, "NotFound", message))


def method_not_allowed(allowed: str) -> WebResponse:
    """Return the 405 of a route asked with another method than ``allowed``, with ``Allow``."""
    message = f"this route answers {allowed} requests only"
    body = error_body(None, "MethodNotAllowed", message)
    return WebResponse(405, body, MappingProxyType({**JSON_HEADERS, "Allow": allowed}))


class KeptAnswers:
    """The answers made of recent statuses (a :mod:`runtime <immortus.runtime>` part).

    ``by_id`` maps ``id(status)`` to (that status, its answer). Holding the status keeps its id
    from being reused by another object while the entry lives, so an entry is never another
    status's answer.
    """

    def __init__(self) -> None:
        self.by_id: dict[int, tuple[JobStatus, WebResponse]] = {}

    def reset(self) -> None:
        self.by_id.clear()

    def after_fork(self) -> None:
        """Keep them: the answers are immutable values, valid in the child too."""


_answers: Final = runtime.part(KeptAnswers).by_id


def job_answer(status: JobStatus) -> WebResponse:
    """Return the 200 answer of a known job: ``status.to_dict()``, encoded.

    The answer is made once per status *object* and kept (at most :data:`MAX_KEPT_ANSWERS`):
    stores hand back the same object for as long as a job's record is unchanged (the memory
    store keeps its statuses; the others decode through a cache keyed by the stored row, see
    :func:`immortus.stores.records.decode`). A changed record is decoded into a new object,
    which gets a new answer: a stale body is never served. Treat the answer's ``body`` as
    read-only: it is shared by every request answered with it.

    Raises:
        TypeError, ValueError: the status's meta holds something JSON cannot carry.
    """
    key = id(status)
    kept = _answers.get(key)
    if kept is not None and kept[0] is status:
        return kept[1]
    answer = WebResponse(200, status.to_dict())
    if len(_answers) >= MAX_KEPT_ANSWERS:
        _answers.clear()
    _answers[key] = (status, answer)
    return answer


def rendered(body: dict[str, Any], token: str | None) -> WebResponse:
    """The 200 of a render: ``body``, with ``token`` when the routes have a secret key."""
    if token is not None:
        body["token"] = token
    return WebResponse(200, body)

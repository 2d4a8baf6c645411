"""The cancel route: ``POST {prefix}/cancel/{job_id}[/{job_class}]`` with ``{"token": ...}``.

The checks, in order, each answering before the next is made:

====  ========================================================================================
500   the routes are not secured (no secret key, not declared open)
415   the request is not sent as ``application/json``
400   a malformed job id or job class, or a body that is not a JSON object with a text (or
      absent) ``token``; other keys are ignored
404   a missing, forged or expired token: exactly the answer of an unknown job (status, body,
      headers), as is a job class nobody tracks
405   the job class did not opt in to cancelling from the web (``cancellable=True`` of
      ``@immortus.track`` / ``immortus.declare``; a job asked without its class never did), or
      its queue cannot cancel it (``NotCancellable``): error type ``NotCancellable``
====  ========================================================================================

Then :func:`immortus.cancel` runs, and its outcome is answered with the job's verify body:
**200** cancelled now (or before), **202** asked to stop and still running, **409** already
ended otherwise, **404** unknown; **503** the store or queue cannot be reached, **500** the
strategy or canceller failed.

A browser sends a cross-origin ``application/json`` ``POST`` only after a CORS preflight the
routes never grant, and the job's token authorises the request; the Django view is also
protected by Django's CSRF middleware (the JavaScript client sends ``X-CSRFToken``).
"""

from __future__ import annotations

import json
from typing import Final

from immortus import registry
from immortus.cancelling import CancelOutcome
from immortus.exceptions import UntrackedJobClass
from immortus.finder import find_strategy
from immortus.web.batch import is_json_media_type
from immortus.web.responses import (
    WebResponse,
    bad_request,
    error_body,
    unknown_job,
    unsupported_media_type,
)

__all__ = [
    "MAX_CANCEL_BYTES",
    "answer_cancellation",
    "cancel_refusal",
    "not_cancellable",
    "parse_token",
]

#: Largest cancel body read, in bytes (``{"token": ...}`` needs a few hundred).
MAX_CANCEL_BYTES: Final = 4096

#: The status of each outcome of :func:`immortus.cancel` (``UNKNOWN`` is the verify 404).
_CODES: Final = {
    CancelOutcome.CANCELLED: 200,
    CancelOutcome.CANCELLING: 202,
    CancelOutcome.ALREADY_COMPLETED: 409,
}


def parse_token(
    body: bytes | bytearray | str, content_type: str | None
) -> str | WebResponse | None:
    """Return the token a cancel body carries (``None``: none), or its 415 or 400 answer."""
    if not is_json_media_type(content_type):
        return unsupported_media_type()
    if len(body) > MAX_CANCEL_BYTES:
        return bad_request(None, f"the body is over {MAX_CANCEL_BYTES} bytes")
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return bad_request(None, "the body is not valid JSON")
    if not isinstance(envelope, dict):
        return bad_request(None, 'the body must be a JSON object: {"token": "..."}')
    token = envelope.get("token")
    if token is not None and not isinstance(token, str):
        return bad_request(None, "token must be a string")
    return token


def cancel_refusal(job_id: str, job_class: str | None) -> WebResponse | None:
    """The 404 or 405 of a job whose class may not be cancelled from the web, or ``None``.

    A class nobody tracks (and no global strategy answers for) is the 404 of an unknown job.
    """
    declared = None if job_class is None else registry.lookup(job_class)
    if declared is not None and declared.cancellable:
        return None
    if job_class is not None and declared is None:
        try:
            find_strategy(job_class)
        except UntrackedJobClass:
            return unknown_job(job_id, job_class)
        except Exception:  # noqa: BLE001, S110  # cancel() reports any other problem
            pass
    if job_class is None:
        message = f"job {job_id!r} cannot be cancelled without its job class"
    else:
        message = (
            f"jobs of class {job_class!r} cannot be cancelled from the web: the class did not "
            "opt in (cancellable=True)"
        )
    return not_cancellable(job_id, message)


def not_cancellable(job_id: str, message: str) -> WebResponse:
    """The 405 of a job that cannot be cancelled (no ``Allow``: the method is right)."""
    return WebResponse(405, error_body(job_id, "NotCancellable", message))


def answer_cancellation(outcome: CancelOutcome, verified: WebResponse) -> WebResponse:
    """The answer to a cancel that ran: the job's verify answer, under its outcome's code.

    ``verified`` is the verify answer of the status the cancel ended with; an unknown job's is
    the verify 404, answered as it is.
    """
    if outcome is CancelOutcome.UNKNOWN:
        return verified
    return WebResponse(_CODES[outcome], verified.body, encoded=verified.content())

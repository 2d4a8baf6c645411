"""The batch verify request: ``{"jobs": [{"job_id", "job_class"?, "token"?}, ...]}``.

An item may name a group instead of a job: ``{"group_id", "token"?}`` (never both ids); it is
answered with the group's aggregate body (see :mod:`.groups`).

It must be sent as ``application/json`` (:func:`is_json_media_type`): a browser sends a
cross-origin ``POST`` of that type only after a CORS preflight the server never grants, while a
``text/plain`` one needs none. :func:`parse_batch` checks the whole envelope before anything is
asked of a strategy, and names the first thing wrong (``jobs[3].job_id: job id must not be
empty``). Unknown keys are ignored, so a newer client can send more.
"""

from __future__ import annotations

import json
from typing import Final, NamedTuple

from immortus.exceptions import InvalidInput
from immortus.validation import check_group_id, check_job_class, check_job_id

__all__ = [
    "JSON_MEDIA_TYPE",
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "BatchItem",
    "GroupItem",
    "Item",
    "is_json_media_type",
    "parse_batch",
]

#: The one media type a batch request may have (with parameters such as ``charset``).
JSON_MEDIA_TYPE: Final = "application/json"

#: Most jobs one batch request may ask about.
MAX_BATCH: Final = 100
#: Largest batch body read, in bytes; adapters should stop reading a request body beyond it.
MAX_BATCH_BYTES: Final = 64 * 1024


def is_json_media_type(content_type: str | None) -> bool:
    """Tell whether a ``Content-Type`` header is ``application/json`` (parameters allowed)."""
    if not isinstance(content_type, str):
        return False
    return content_type.partition(";")[0].strip().lower() == JSON_MEDIA_TYPE


class BatchItem(NamedTuple):
    """One job of a batch request."""

    job_id: str
    job_class: str | None
    token: str | None


class GroupItem(NamedTuple):
    """One group of a batch request."""

    group_id: str
    token: str | None


#: One item of a batch request: a job or a group.
Item = BatchItem | GroupItem


def parse_batch(
    body: bytes | bytearray | str, *, max_items: int = MAX_BATCH, max_bytes: int = MAX_BATCH_BYTES
) -> list[Item]:
    """Return the jobs and groups a batch body asks about, in order.

    Raises:
        InvalidInput: the body is too large, not JSON, not of the documented shape, holds too
            many items, or names a malformed job id, job class or group id. The message says
            which.
    """
    if not isinstance(body, bytes | bytearray | str):
        raise InvalidInput("the body must be JSON text")
    if len(body) > max_bytes:
        raise InvalidInput(f"the body is over {max_bytes} bytes")
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, too deep
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(envelope, dict):
        raise InvalidInput('the body must be a JSON object: {"jobs": [...]}')
    jobs = envelope.get("jobs")
    if not isinstance(jobs, list):
        raise InvalidInput('"jobs" must be a list of {"job_id", "job_class", "token"} objects')
    if len(jobs) > max_items:
        raise InvalidInput(f'"jobs" holds {len(jobs)} items; the limit is {max_items}')
    return [_item(index, job) for index, job in enumerate(jobs)]


def _item(index: int, job: object) -> Item:
    where = f"jobs[{index}]"
    if not isinstance(job, dict):
        raise InvalidInput(f"{where} must be an object")
    if "group_id" in job:
        return _group(where, job)
    if "job_id" not in job:
        raise InvalidInput(f"{where}.job_id is missing")
    try:
        job_id = check_job_id(job["job_id"])
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.job_id: {exc}") from None
    job_class = job.get("job_class")
    if job_class is not None:
        try:
            check_job_class(job_class)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}.job_class: {exc}") from None
    return BatchItem(job_id, job_class, _token(where, job))


def _group(where: str, item: dict[str, object]) -> GroupItem:
    if "job_id" in item:
        raise InvalidInput(f"{where} names a job_id and a group_id: one or the other")
    try:
        group_id = check_group_id(item["group_id"])
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.group_id: {exc}") from None
    return GroupItem(group_id, _token(where, item))


def _token(where: str, item: dict[str, object]) -> str | None:
    token = item.get("token")
    if token is not None and not isinstance(token, str):
        raise InvalidInput(f"{where}.token must be a string")
    return token

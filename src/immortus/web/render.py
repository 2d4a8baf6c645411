"""Rendering a job for the browser: what an enqueue view hands the page to follow it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Final

from immortus.exceptions import InvalidInput, UntrackedJobClass
from immortus.finder import find_strategy
from immortus.queues import identify
from immortus.validation import check_job_class, check_job_id
from immortus.web.responses import WebResponse, rendered
from immortus.web.secured import NOT_SECURED, log_once
from immortus.web.tokens import JobTokens

__all__ = ["JobRendering", "identify_job", "warn_if_untracked"]

logger = logging.getLogger("immortus.web")

#: The attributes read, in order, for the id of a job object no queue recognises.
_ID_ATTRIBUTES: Final = ("job_id", "id", "task_id", "message_id")


def identify_job(job: object) -> tuple[object, str | None]:
    """Return the job id (unchecked) and the job class (or ``None``) ``job`` carries.

    ``job`` is a job id, a mapping with ``job_id`` or ``id`` (and maybe ``job_class``), a
    queue's job object (:func:`immortus.queues.identify`), or any object with one of
    ``job_id``, ``id``, ``task_id`` or ``message_id``. Never raises.
    """
    if isinstance(job, str):
        return job, None
    if isinstance(job, Mapping):
        given = job.get("job_id")
        given = job.get("id") if given is None else given
        kind = job.get("job_class")
        return _id_text(given), kind if isinstance(kind, str) else None
    queue_id, queue_class = identify(job)
    found: object = queue_id
    if found is None:
        found = next(
            (value for name in _ID_ATTRIBUTES if (value := getattr(job, name, None)) is not None),
            None,
        )
    kind = getattr(job, "job_class", None)
    return _id_text(found), kind if isinstance(kind, str) else queue_class


def _id_text(found: object) -> object:
    return str(found) if isinstance(found, uuid.UUID) or type(found) is int else found


def warn_if_untracked(job_class: str) -> None:
    """Warn when verify will answer 404 for every job of ``job_class`` (nothing answers for it)."""
    try:
        find_strategy(job_class)
    except UntrackedJobClass:
        logger.warning(
            "immortus: render_job(job_class=%r): that job class is not tracked and no global "
            "strategy is configured, so verify will answer 404; declare it with @immortus.track",
            job_class,
        )
    except Exception:  # noqa: BLE001, S110  # verify reports any other problem when asked
        pass


class JobRendering:
    """The job renders of :class:`~immortus.web.core.Verifier`, which this is mixed into.

    The verifier sets ``secured`` (the routes serve) and ``tokens`` (``None``: routes open).
    """

    secured: bool
    tokens: JobTokens | None

    def render_job(
        self, job: object, job_class: str | None = None, *, subject: str | None = None
    ) -> WebResponse:
        """Return what the browser needs to follow ``job``: ``{job_id, job_class[, token]}``.

        The ``render_immortus`` of the Ruby gem immortus. ``job`` is a job id, a mapping with
        ``job_id`` or ``id`` (and maybe ``job_class``), or a queue's job object: a Celery
        ``AsyncResult``, an RQ ``Job``, a Django ``TaskResult``, a Huey or Dramatiq result
        (:func:`immortus.queues.identify` reads its id and class), or any object with
        ``job_id``, ``id``, ``task_id`` or ``message_id``. The job class is ``job_class`` when
        given, else the mapping's or object's ``job_class``, else the queue's. The token is
        bound to ``subject`` (the enqueuing request's user or session). Answers 500 ``{}`` (and
        logs why) when ``job`` carries no usable job id, ``subject`` is not text, or the routes
        are not secured.
        """
        if not self.secured:
            log_once(logging.ERROR, f"immortus: render_job: {NOT_SECURED}")
            return WebResponse(500, {})
        found_id, found_class = identify_job(job)
        job_class = found_class if job_class is None else job_class
        try:
            job_id = check_job_id(found_id)
            if job_class is not None:
                check_job_class(job_class)
            token = None if self.tokens is None else self.tokens.sign(job_id, job_class, subject)
        except InvalidInput as exc:
            logger.error(  # noqa: TRY400  # the caller's mistake: the message says it all
                "immortus: render_job cannot render %s: %s", type(job).__name__, exc
            )
            return WebResponse(500, {})
        if job_class is not None:
            warn_if_untracked(job_class)
        return rendered({"job_id": job_id, "job_class": job_class}, token)

    def token_for(
        self, job_id: str, job_class: str | None = None, *, subject: str | None = None
    ) -> str | None:
        """Return the token that opens ``job_id`` (under ``job_class``, for ``subject``).

        ``None`` when the endpoints are open (no secret key).

        Raises:
            InvalidJobId, InvalidJobClass: a name is malformed.
            InvalidInput: ``subject`` is neither text nor ``None``.
        """
        return None if self.tokens is None else self.tokens.sign(job_id, job_class, subject)

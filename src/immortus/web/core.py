"""The framework-neutral web core: verify one job, verify a batch, stream a job, render a job.

Every framework adapter is a thin translation: request → one :class:`Verifier` call → the
answer's ``status``, ``headers`` and ``content()`` (or frames, for a stream). The HTTP codes are
those of DESIGN §3:

====  ========================================================================================
200   a known job: ``JobStatus.to_dict()``
400   malformed input (a job id or job class no job can have, a bad batch body); says what
404   an unknown job, a job class that is not tracked, a missing, forged or expired token —
      all the same body, the ``unknown`` status of the (job id, job class) asked about
500   the strategy failed (or no strategy applies); logged with its traceback, never sent
503   the store or queue backend cannot be reached
====  ========================================================================================

A ``job_class`` from a request is only ever looked up in the registry of tracked jobs, never
imported. With a secret key, a request must carry the job's token (see :mod:`.tokens`), checked
before any I/O, so an unauthorised caller cannot even learn whether a job exists. An app may
bind tokens to a *subject* (a user id, a session key): it passes the subject of the enqueuing
request to :meth:`Verifier.render_job`, and the subject of each status request to the verify
calls, and a token then opens its job only for the subject it was signed for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from immortus import config, query, registry
from immortus.exceptions import InvalidInput, StoreUnavailable, StrategyError
from immortus.status import JobStatus, State
from immortus.validation import check_job_class, check_job_id
from immortus.web.batch import MAX_BATCH, MAX_BATCH_BYTES, BatchItem, parse_batch
from immortus.web.responses import WebResponse, bad_request, error_body, job_answer
from immortus.web.stream import StreamResponse
from immortus.web.tokens import JobTokens

__all__ = ["Verifier", "get_verifier", "render_job"]

logger = logging.getLogger("immortus.web")

_UNAVAILABLE = "the job store cannot be reached; try again later"
_STRATEGY_FAILED = "the job's tracking strategy failed"
_SERVER_FAILED = "the server could not answer"
_ID_ATTRIBUTES = ("job_id", "id", "task_id", "message_id")

_open_warning = threading.Lock()
_open_warned = False


def _warn_open() -> None:
    global _open_warned  # noqa: PLW0603  # once per process, by design
    with _open_warning:
        if _open_warned:
            return
        _open_warned = True
    logger.warning(
        "immortus: no secret_key is configured, so the job status endpoints are open: anyone "
        "who knows a job id can read its status. Set immortus.configure(secret_key=...) to "
        "require the token render_job hands out."
    )


class Verifier:
    """Answers the verify, batch and stream requests, and renders jobs for the browser.

    ``secret_key`` signs job tokens and makes every request show one (``None``: open, with a
    warning once per process). Every call that checks or signs a token takes a keyword
    ``subject``: the user or session the app binds the token to (``None``: none); a token
    signed for one subject is refused for any other, with the 404 of an unknown job. Without a
    secret key the subject is ignored. ``token_max_age`` is a token's life in seconds; ``max_batch``
    the most jobs one batch may ask about; ``clock`` the Unix time (for tests).

    Raises:
        ConfigurationError: the secret key or token age is unusable.
        ValueError: ``max_batch`` is not a positive whole number.
    """

    def __init__(
        self,
        *,
        secret_key: str | bytes | None = None,
        token_max_age: float = 86400,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if type(max_batch) is not int or max_batch < 1:
            raise ValueError(f"max_batch must be a positive whole number, not {max_batch!r}")
        self.max_batch = max_batch
        self.tokens = (
            None
            if secret_key is None
            else JobTokens(secret_key, max_age=token_max_age, clock=clock)
        )
        if self.tokens is None:
            _warn_open()

    @classmethod
    def from_config(
        cls, *, max_batch: int = MAX_BATCH, clock: Callable[[], float] = time.time
    ) -> Verifier:
        """Return a verifier with the configured ``secret_key`` and ``token_max_age``."""
        settings = config.get_config()
        return cls(
            secret_key=settings.secret_key,
            token_max_age=settings.token_max_age,
            max_batch=max_batch,
            clock=clock,
        )

    # -- one job -------------------------------------------------------------------------

    def verify(
        self,
        job_id: str,
        job_class: str | None = None,
        token: str | None = None,
        *,
        subject: str | None = None,
    ) -> WebResponse:
        """Answer ``GET {prefix}/verify/{job_id}[/{job_class}]`` (one strategy call at most)."""
        refused = self._refusal(job_id, job_class, token, subject)
        return refused or self._fetch(job_id, job_class)

    async def averify(
        self,
        job_id: str,
        job_class: str | None = None,
        token: str | None = None,
        *,
        subject: str | None = None,
    ) -> WebResponse:
        """Async twin of :meth:`verify`; the strategy is asked in a worker thread.

        Unless it can answer without waiting (:meth:`TrackingStrategy.status_nowait`; see
        :func:`immortus.query.astatus`).
        """
        refused = self._refusal(job_id, job_class, token, subject)
        if refused is not None:
            return refused
        try:
            found = await query.astatus(job_id, job_class)
            return self._answer(job_id, job_class, found)
        except Exception as exc:  # noqa: BLE001  # every failure becomes a bodied 500/503
            return self._failure(job_id, exc)

    def _refusal(
        self, job_id: object, job_class: object, token: object, subject: str | None
    ) -> WebResponse | None:
        """Return the 400 or 404 answer to a request that gets no further, or ``None``."""
        try:
            name = check_job_id(job_id)
            kind = None if job_class is None else check_job_class(job_class)
        except InvalidInput as exc:
            return bad_request(job_id, str(exc))
        if kind is not None and registry.lookup(kind) is None:
            return self._unknown(name, kind)
        if self.tokens is not None and not self.tokens.check(token, name, kind, subject):
            return self._unknown(name, kind)
        return None

    def _fetch(self, job_id: str, job_class: str | None) -> WebResponse:
        try:
            return self._answer(job_id, job_class, query.status(job_id, job_class))
        except Exception as exc:  # noqa: BLE001  # every failure becomes a bodied 500/503
            return self._failure(job_id, exc)

    def _answer(self, job_id: str, job_class: str | None, found: JobStatus) -> WebResponse:
        if found.state is State.UNKNOWN:
            return self._unknown(job_id, job_class)
        return job_answer(found)

    @staticmethod
    def _unknown(job_id: str, job_class: str | None) -> WebResponse:
        # The one 404 body: an unknown job, an untracked class and a bad token look alike.
        return WebResponse(404, JobStatus.unknown(job_id, job_class).to_dict())

    @staticmethod
    def _failure(job_id: str, exc: BaseException) -> WebResponse:
        if isinstance(exc, StoreUnavailable):
            logger.warning("immortus: cannot answer for job %r: %s", job_id, exc)
            return WebResponse(503, error_body(job_id, "StoreUnavailable", _UNAVAILABLE))
        logger.error("immortus: cannot answer for job %r", job_id, exc_info=exc)
        if isinstance(exc, StrategyError):
            return WebResponse(500, error_body(job_id, "StrategyError", _STRATEGY_FAILED))
        return WebResponse(500, error_body(job_id, "ServerError", _SERVER_FAILED))

    # -- batch -----------------------------------------------------------------------------

    def verify_batch(
        self, body: bytes | bytearray | str, *, subject: str | None = None
    ) -> WebResponse:
        """Answer ``POST {prefix}/verify``: each job's verify body, in order, in one 200.

        The known jobs are asked with :func:`immortus.query.settle_many`: one round trip per
        store. A malformed body is a 400 for the whole request. Every item's token is checked
        against the request's ``subject``.
        """
        items = self._parse(body)
        if isinstance(items, WebResponse):
            return items
        answers = [self._refusal(*item, subject) for item in items]
        pending = [index for index, answer in enumerate(answers) if answer is None]
        if pending:
            asked = [(items[index].job_id, items[index].job_class) for index in pending]
            settled: Sequence[JobStatus | BaseException]
            try:
                settled = query.settle_many(asked)
            except Exception as exc:  # noqa: BLE001  # the whole lookup failed
                settled = [exc] * len(asked)
            for index, outcome in zip(pending, settled, strict=True):
                answers[index] = self._settled(items[index], outcome)
        return self._batch(answers)

    async def averify_batch(
        self, body: bytes | bytearray | str, *, subject: str | None = None
    ) -> WebResponse:
        """Async twin of :meth:`verify_batch`; the strategies are asked in a worker thread."""
        return await asyncio.to_thread(partial(self.verify_batch, body, subject=subject))

    def _parse(self, body: bytes | bytearray | str) -> list[BatchItem] | WebResponse:
        try:
            return parse_batch(body, max_items=self.max_batch, max_bytes=MAX_BATCH_BYTES)
        except InvalidInput as exc:
            return bad_request(None, str(exc))

    def _settled(self, item: BatchItem, outcome: JobStatus | BaseException) -> WebResponse:
        if isinstance(outcome, BaseException):
            return self._failure(item.job_id, outcome)
        try:
            return self._answer(item.job_id, item.job_class, outcome)
        except Exception as exc:  # noqa: BLE001  # a body JSON cannot carry
            return self._failure(item.job_id, exc)

    @staticmethod
    def _batch(answers: list[WebResponse | None]) -> WebResponse:
        done = [answer for answer in answers if answer is not None]
        encoded = b'{"jobs":[' + b",".join(answer.content() for answer in done) + b"]}"
        return WebResponse(200, {"jobs": [answer.body for answer in done]}, encoded=encoded)

    # -- stream ----------------------------------------------------------------------------

    def stream(
        self,
        job_id: str,
        job_class: str | None = None,
        token: str | None = None,
        *,
        subject: str | None = None,
        interval: float = 0.05,
        heartbeat: float = 15.0,
        give_up_after: float = 60.0,
    ) -> StreamResponse:
        """Answer ``GET {prefix}/stream/{job_id}[/{job_class}]`` (see :mod:`.stream`).

        The first poll happens here, blocking: for WSGI servers. ASGI servers use
        :meth:`astream`.
        """
        first = self.verify(job_id, job_class, token, subject=subject)
        pace = {"interval": interval, "heartbeat": heartbeat, "give_up_after": give_up_after}
        return self._stream(first, job_id, job_class, **pace)

    async def astream(
        self,
        job_id: str,
        job_class: str | None = None,
        token: str | None = None,
        *,
        subject: str | None = None,
        interval: float = 0.05,
        heartbeat: float = 15.0,
        give_up_after: float = 60.0,
    ) -> StreamResponse:
        """Async twin of :meth:`stream`: the first poll is :meth:`averify`'s."""
        first = await self.averify(job_id, job_class, token, subject=subject)
        pace = {"interval": interval, "heartbeat": heartbeat, "give_up_after": give_up_after}
        return self._stream(first, job_id, job_class, **pace)

    def _stream(
        self,
        first: WebResponse,
        job_id: str,
        job_class: str | None,
        **pace: float,
    ) -> StreamResponse:
        """Return the stream that opens with ``first``, then follows the job's change feed.

        The feed's outcomes are answered as a batch item would be (:meth:`_settled`).
        """
        answer = partial(self._settled, BatchItem(job_id, job_class, None))
        return StreamResponse(first, (job_id, job_class), answer, **pace)

    # -- render ----------------------------------------------------------------------------

    def render_job(
        self, job: object, job_class: str | None = None, *, subject: str | None = None
    ) -> WebResponse:
        """Return what the browser needs to follow ``job``: ``{job_id, job_class[, token]}``.

        The seed's ``render_immortus``. ``job`` is a job id, a mapping with ``job_id`` or
        ``id``, or a queue's job object with ``job_id``, ``id``, ``task_id`` or ``message_id``
        (Celery, RQ, Huey, Dramatiq, Django tasks); ``job_class`` defaults to the job's own.
        The token is bound to ``subject`` (the enqueuing request's user or session). Answers
        500 ``{}`` (and logs why) when ``job`` carries no usable job id or ``subject`` is not
        text.
        """
        if job_class is None:
            job_class = _job_class_of(job)
        try:
            job_id = check_job_id(_job_id_of(job))
            if job_class is not None:
                check_job_class(job_class)
            token = None if self.tokens is None else self.tokens.sign(job_id, job_class, subject)
        except InvalidInput as exc:
            logger.error(  # noqa: TRY400  # the caller's mistake: the message says it all
                "immortus: render_job cannot render %s: %s", type(job).__name__, exc
            )
            return WebResponse(500, {})
        if job_class is not None and registry.lookup(job_class) is None:
            logger.warning(
                "immortus: render_job(job_class=%r): that job class is not tracked, so verify "
                "will answer 404; declare it with @immortus.track",
                job_class,
            )
        body: dict[str, Any] = {"job_id": job_id, "job_class": job_class}
        if token is not None:
            body["token"] = token
        return WebResponse(200, body)

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


def _job_id_of(job: object) -> object:
    if isinstance(job, str):
        return job
    if isinstance(job, Mapping):
        found = job.get("job_id")
        found = job.get("id") if found is None else found
    else:
        found = next(
            (value for name in _ID_ATTRIBUTES if (value := getattr(job, name, None)) is not None),
            None,
        )
    if isinstance(found, uuid.UUID) or (type(found) is int):
        return str(found)
    return found


def _job_class_of(job: object) -> str | None:
    found = job.get("job_class") if isinstance(job, Mapping) else getattr(job, "job_class", None)
    return found if isinstance(found, str) else None


_lock = threading.Lock()
_default: Verifier | None = None


def _forget_default() -> None:
    global _default  # noqa: PLW0603  # the cached verifier follows the settings
    with _lock:
        _default = None


config.on_change(_forget_default)


def get_verifier() -> Verifier:
    """Return the verifier of the current settings (made again when they change)."""
    global _default  # noqa: PLW0603
    verifier = _default
    if verifier is not None:
        return verifier
    with _lock:
        if _default is None:
            _default = Verifier.from_config()
        return _default


def render_job(
    job: object, job_class: str | None = None, *, subject: str | None = None
) -> WebResponse:
    """:meth:`Verifier.render_job` with the current settings (see :func:`get_verifier`)."""
    return get_verifier().render_job(job, job_class, subject=subject)

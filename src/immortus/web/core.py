"""The framework-neutral web core: verify one job or a batch, stream jobs, render a job.

Every framework adapter is a thin translation: request → one :class:`Verifier` call → the
answer's ``status``, ``headers`` and ``content()`` (or frames, for a stream); the routes are
:data:`immortus.web.routes.ROUTES`. The HTTP codes (cancel adds its own, see :mod:`.cancel`):

====  ========================================================================================
200   a known job: ``JobStatus.to_dict()``, the body :func:`immortus.status` gives (with
      ``"history"`` when verify is asked with the ``history`` option, see :mod:`.options`)
400   malformed input (a job id or job class no job can have, a bad ``history`` option, a bad
      batch body); says what
404   an unknown job, a job class nobody tracks (and no global strategy answers for), a
      missing, forged or expired token — all the same body, the ``unknown`` status of the
      (job id, job class) asked about
415   a ``POST`` (batch, multi-job stream, cancel) whose ``Content-Type`` is not
      ``application/json``
500   the strategy failed (or no strategy applies), or the routes are not secured (no secret
      key, and not declared open); logged, never with a traceback in the body
503   the store or queue backend cannot be reached
====  ========================================================================================

A job is answered exactly as :func:`immortus.status` answers it: one resolution path
(:func:`immortus.finder.find_strategy`), where a ``job_class`` from a request is only ever
looked up in the registry of tracked jobs, never imported. With a secret key, a request must
carry the job's token (see :mod:`.tokens`), checked before any I/O and at the same cost
whatever is wrong with it, so an unauthorised caller cannot even learn whether a job exists.
Without a key the routes refuse to serve (500, :class:`~immortus.exceptions.EndpointsNotSecured`)
unless the app declared them open (``immortus.configure(open_endpoints=True)``).

An app may bind tokens to a *subject* (a user id, a session key): it passes the subject of the
enqueuing request to :meth:`Verifier.render_job`, and the subject of each status request to the
verify calls, and a token then opens its job only for the subject it was signed for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

from immortus import config, query
from immortus.exceptions import (
    EndpointsNotSecured,
    InvalidInput,
    StoreUnavailable,
    StrategyError,
    UntrackedJobClass,
)
from immortus.finder import find_strategy
from immortus.queues import identify
from immortus.status import JobStatus, State
from immortus.validation import check_job_class, check_job_id
from immortus.web.batch import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    BatchItem,
    is_json_media_type,
    parse_batch,
)
from immortus.web.cancel import (
    answer_cancellation,
    cancel_refusal,
    not_cancellable,
    parse_token,
    run_cancel,
)
from immortus.web.multistream import MultiStreamResponse
from immortus.web.options import wants_history
from immortus.web.recent import RecentStatuses
from immortus.web.responses import (
    WebResponse,
    bad_request,
    error_body,
    job_answer,
    unknown_job,
    unsupported_media_type,
)
from immortus.web.stream import StreamResponse
from immortus.web.stream_limits import StreamLimits, admit
from immortus.web.tokens import JobTokens

__all__ = ["JobResponder", "Verifier", "get_verifier", "job_responder", "render_job"]

logger = logging.getLogger("immortus.web")

_UNAVAILABLE = "the job store cannot be reached; try again later"
_STRATEGY_FAILED = "the job's tracking strategy failed"
_SERVER_FAILED = "the server could not answer"
_ID_ATTRIBUTES = ("job_id", "id", "task_id", "message_id")
#: What an unsecured route answers, and logs once per process.
_NOT_SECURED = (
    "the immortus routes have no secret key, so they serve nothing: set "
    "immortus.configure(secret_key=...) to hand out job tokens, or declare the routes public "
    "with immortus.configure(open_endpoints=True) (anyone who knows a job id may then read its "
    "status)"
)
_OPEN = (
    "immortus: the job status routes are open on purpose (open_endpoints=True, no secret_key): "
    "anyone who knows a job id can read its status"
)

#: The messages already logged by this process (see :func:`_log_once`).
_logged: set[str] = set()
_logged_lock = threading.Lock()


def _log_once(level: int, message: str) -> None:
    """Log ``message`` at ``level`` the first time only, in this process."""
    with _logged_lock:
        if message in _logged:
            return
        _logged.add(message)
    logger.log(level, message)


class Verifier:
    """Answers the verify, batch, stream and cancel requests, and renders jobs for the browser.

    ``secret_key`` signs job tokens and makes every request show one. Without it the verifier
    refuses every request (500, ``EndpointsNotSecured``, an error logged once per process)
    unless ``open_endpoints`` is true: then anyone who knows a job id may read its status (a
    warning says so once per process). Every call that checks or signs a token takes a keyword
    ``subject``: the user or session the app binds the token to (``None``: none); a token
    signed for one subject is refused for any other, with the 404 of an unknown job. Without a
    secret key the subject is ignored. ``token_max_age`` is a token's life in seconds;
    ``max_batch`` the most jobs one batch may ask about; ``clock`` the Unix time (for tests).

    ``answer_staleness`` (seconds, ``None``: off) lets a single-job verify answer a job from
    the statuses it read lately (:class:`~immortus.web.recent.RecentStatuses`), so that polling
    an unchanged job costs no store read: an answer then lags the job's latest write by at
    most that long (and what changes without a write, a lapsed lease, by at most
    :data:`~immortus.web.recent.MAX_KEPT_AGE`). Only jobs of a plain store strategy over a store
    that names its changes are kept; batches and streams always read.

    Raises:
        ConfigurationError: the secret key or token age is unusable.
        ValueError: ``max_batch`` is not a positive whole number, or ``answer_staleness`` not
            a positive number of seconds.
    """

    def __init__(
        self,
        *,
        secret_key: str | bytes | None = None,
        open_endpoints: bool = False,
        token_max_age: float = 86400,
        max_batch: int = MAX_BATCH,
        answer_staleness: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if type(max_batch) is not int or max_batch < 1:
            raise ValueError(f"max_batch must be a positive whole number, not {max_batch!r}")
        self.max_batch = max_batch
        #: The statuses read lately, when verify may answer from them (``answer_staleness``).
        self.recent = None if answer_staleness is None else RecentStatuses(answer_staleness)
        self.tokens = (
            None
            if secret_key is None
            else JobTokens(secret_key, max_age=token_max_age, clock=clock)
        )
        #: Whether the routes serve: with a secret key, or declared open without one.
        self.secured = self.tokens is not None or open_endpoints is True
        if self.tokens is None and self.secured:
            _log_once(logging.WARNING, _OPEN)

    @classmethod
    def from_config(
        cls, *, max_batch: int = MAX_BATCH, clock: Callable[[], float] = time.time
    ) -> Verifier:
        """Return a verifier of the configured key, open endpoints, token age and staleness."""
        settings = config.get_config()
        return cls(
            secret_key=settings.secret_key,
            open_endpoints=settings.open_endpoints,
            token_max_age=settings.token_max_age,
            answer_staleness=settings.answer_staleness,
            max_batch=max_batch,
            clock=clock,
        )

    def require_secured(self) -> None:
        """Raise unless this verifier serves: for a framework's start-up check.

        Raises:
            EndpointsNotSecured: no secret key, and the routes were not declared open.
        """
        if not self.secured:
            raise EndpointsNotSecured(_NOT_SECURED)

    def _not_secured(self, job_id: object) -> WebResponse:
        """The 500 of every request while the routes are not secured (logged once)."""
        _log_once(logging.ERROR, f"immortus: {_NOT_SECURED}")
        return WebResponse(500, error_body(job_id, "EndpointsNotSecured", _NOT_SECURED))

    # -- one job -------------------------------------------------------------------------

    def verify(
        self,
        job_id: str,
        job_class: str | None = None,
        token: str | None = None,
        *,
        subject: str | None = None,
        history: bool | str | None = False,
    ) -> WebResponse:
        """Answer ``GET {prefix}/verify/{job_id}[/{job_class}]`` (one strategy call at most).

        ``history`` (a flag, or the ``history`` query parameter's text, see
        :mod:`.options`) adds the job's attempt history to a 200 body, read afresh (never from
        the recent statuses); an unknown job's 404 is the same with or without it.
        """
        refused = self._verify_refusal(job_id, job_class, token, subject, history)
        if refused is not None:
            return refused
        if wants_history(history):
            return self._fetch_history(job_id, job_class)
        return self._fetch(job_id, job_class)

    async def averify(
        self,
        job_id: str,
        job_class: str | None = None,
        token: str | None = None,
        *,
        subject: str | None = None,
        history: bool | str | None = False,
    ) -> WebResponse:
        """Async twin of :meth:`verify`; the strategy is asked in a worker thread.

        Unless it can answer without waiting (:meth:`TrackingStrategy.status_nowait`; see
        :func:`immortus.query.astatus`).
        """
        refused = self._verify_refusal(job_id, job_class, token, subject, history)
        if refused is not None:
            return refused
        if wants_history(history):
            return await asyncio.to_thread(self._fetch_history, job_id, job_class)
        try:
            recent = self.recent
            if recent is None:
                return self._answer(job_id, job_class, await query.astatus(job_id, job_class))
            try:
                kept, ticket = recent.lookup(job_id, job_class, wait=False)
            except BlockingIOError:  # the store's changes are asked off the event loop
                kept, ticket = await asyncio.to_thread(recent.lookup, job_id, job_class)
            if kept is None:
                kept = await query.astatus(job_id, job_class)
                recent.keep(ticket, job_id, job_class, kept)
            return self._answer(job_id, job_class, kept)
        except Exception as exc:  # noqa: BLE001  # every failure becomes a bodied 500/503
            return self._failure(job_id, job_class, exc)

    def _verify_refusal(
        self,
        job_id: object,
        job_class: object,
        token: object,
        subject: str | None,
        history: bool | str | None,
    ) -> WebResponse | None:
        """:meth:`_refusal`, after a malformed ``history`` option's 400 (which comes first)."""
        if self.secured and history not in (None, False):
            try:
                wants_history(history)
            except InvalidInput as exc:
                return bad_request(job_id, str(exc))
        return self._refusal(job_id, job_class, token, subject)

    def _refusal(
        self, job_id: object, job_class: object, token: object, subject: str | None
    ) -> WebResponse | None:
        """Return the 500, 400 or 404 answer to a request that gets no further, or ``None``.

        Whether the job or its class exists is not looked at here: every token refusal costs
        the one HMAC (:meth:`JobTokens.check`), and only then is a strategy asked.
        """
        if not self.secured:
            return self._not_secured(job_id)
        try:
            name = check_job_id(job_id)
            kind = None if job_class is None else check_job_class(job_class)
        except InvalidInput as exc:
            return bad_request(job_id, str(exc))
        if self.tokens is not None and not self.tokens.check(token, name, kind, subject):
            return self._unknown(name, kind)
        return None

    def _fetch(self, job_id: str, job_class: str | None) -> WebResponse:
        try:
            recent = self.recent
            if recent is None:
                return self._answer(job_id, job_class, query.status(job_id, job_class))
            kept, ticket = recent.lookup(job_id, job_class)
            if kept is None:
                kept = query.status(job_id, job_class)
                recent.keep(ticket, job_id, job_class, kept)
            return self._answer(job_id, job_class, kept)
        except Exception as exc:  # noqa: BLE001  # every failure becomes a bodied 500/503
            return self._failure(job_id, job_class, exc)

    def _fetch_history(self, job_id: str, job_class: str | None) -> WebResponse:
        """The answer with the job's history: read and encoded for this request alone."""
        try:
            found = query.status(job_id, job_class, history=True)
            if found.state is State.UNKNOWN:
                return self._unknown(job_id, job_class)
            return WebResponse(200, found.to_dict(history=True))
        except Exception as exc:  # noqa: BLE001  # every failure becomes a bodied 500/503
            return self._failure(job_id, job_class, exc)

    def _answer(self, job_id: str, job_class: str | None, found: JobStatus) -> WebResponse:
        if found.state is State.UNKNOWN:
            return self._unknown(job_id, job_class)
        return job_answer(found)

    @staticmethod
    def _unknown(job_id: str, job_class: str | None) -> WebResponse:
        return unknown_job(job_id, job_class)

    @classmethod
    def _failure(cls, job_id: str, job_class: str | None, exc: BaseException) -> WebResponse:
        if isinstance(exc, UntrackedJobClass):  # what immortus.status raises: the one 404
            return cls._unknown(job_id, job_class)
        if isinstance(exc, StoreUnavailable):
            logger.warning("immortus: cannot answer for job %r: %s", job_id, exc)
            return WebResponse(503, error_body(job_id, "StoreUnavailable", _UNAVAILABLE))
        logger.error("immortus: cannot answer for job %r", job_id, exc_info=exc)
        if isinstance(exc, StrategyError):
            return WebResponse(500, error_body(job_id, "StrategyError", _STRATEGY_FAILED))
        return WebResponse(500, error_body(job_id, "ServerError", _SERVER_FAILED))

    # -- batch -----------------------------------------------------------------------------

    def verify_batch(
        self,
        body: bytes | bytearray | str,
        *,
        content_type: str | None,
        subject: str | None = None,
    ) -> WebResponse:
        """Answer ``POST {prefix}/verify``: each job's verify body, in order, in one 200.

        ``content_type`` is the request's ``Content-Type`` header (``None`` if it has none):
        anything but ``application/json`` (parameters allowed) is a 415, so that no page of
        another origin can post a batch without the CORS preflight such a type needs. The known
        jobs are asked with :func:`immortus.query.settle_many`: one round trip per store. A
        malformed body is a 400 for the whole request. Every item's token is checked against
        the request's ``subject``.
        """
        items = self._batch_items(body, content_type)
        if isinstance(items, WebResponse):
            return items
        return self._batch(self._answer_items(items, subject))

    async def averify_batch(
        self,
        body: bytes | bytearray | str,
        *,
        content_type: str | None,
        subject: str | None = None,
    ) -> WebResponse:
        """Async twin of :meth:`verify_batch`; the strategies are asked in a worker thread."""
        ask = partial(self.verify_batch, body, content_type=content_type, subject=subject)
        return await asyncio.to_thread(ask)

    def _batch_items(
        self, body: bytes | bytearray | str, content_type: str | None
    ) -> list[BatchItem] | WebResponse:
        """The jobs a batch body asks about, or the 500, 415 or 400 refusing the whole body."""
        if not self.secured:
            return self._not_secured(None)
        if not is_json_media_type(content_type):
            return unsupported_media_type()
        try:
            return parse_batch(body, max_items=self.max_batch, max_bytes=MAX_BATCH_BYTES)
        except InvalidInput as exc:
            return bad_request(None, str(exc))

    def _answer_items(self, items: list[BatchItem], subject: str | None) -> list[WebResponse]:
        """Each job's verify answer, in order: the known ones asked in one ``settle_many``."""
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
        return [answer for answer in answers if answer is not None]

    def _settled(self, item: BatchItem, outcome: JobStatus | BaseException) -> WebResponse:
        if isinstance(outcome, BaseException):
            return self._failure(item.job_id, item.job_class, outcome)
        try:
            return self._answer(item.job_id, item.job_class, outcome)
        except Exception as exc:  # noqa: BLE001  # a body JSON cannot carry
            return self._failure(item.job_id, item.job_class, exc)

    @staticmethod
    def _batch(done: list[WebResponse]) -> WebResponse:
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
        limits: StreamLimits | None = None,
    ) -> StreamResponse:
        """Answer ``GET {prefix}/stream/{job_id}[/{job_class}]`` (see :mod:`.stream`).

        The first poll happens here, blocking: for WSGI servers. ASGI servers use
        :meth:`astream`. With ``limits``, the stream is admitted under them
        (:func:`~immortus.web.stream_limits.admit`: a 503 or 429 answer past them); without,
        the caller bounds it (the adapters do).
        """
        first = self.verify(job_id, job_class, token, subject=subject)
        pace = {"interval": interval, "heartbeat": heartbeat, "give_up_after": give_up_after}
        return _bounded(self._stream(first, job_id, job_class, **pace), limits, token, subject)

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
        limits: StreamLimits | None = None,
    ) -> StreamResponse:
        """Async twin of :meth:`stream`: the first poll is :meth:`averify`'s."""
        first = await self.averify(job_id, job_class, token, subject=subject)
        pace = {"interval": interval, "heartbeat": heartbeat, "give_up_after": give_up_after}
        return _bounded(self._stream(first, job_id, job_class, **pace), limits, token, subject)

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

    def stream_jobs(
        self,
        body: bytes | bytearray | str,
        *,
        content_type: str | None,
        subject: str | None = None,
        interval: float = 0.05,
        heartbeat: float = 15.0,
        give_up_after: float = 60.0,
        limits: StreamLimits | None = None,
    ) -> StreamResponse:
        """Answer ``POST {prefix}/stream``: one event stream for every job of a batch body.

        The body, its content type and its item limit are the batch's (:meth:`verify_batch`);
        a refusal of the whole request is a plain JSON answer (``status``, ``headers`` and the
        body as the only "frame"). Otherwise a
        :class:`~immortus.web.multistream.MultiStreamResponse`: every job's verify answer now,
        then its changes (see :mod:`.multistream`). The first poll happens here, blocking;
        ASGI servers use :meth:`astream_jobs`. ``limits`` as in :meth:`stream`; the stream
        takes one slot, counted against the first job's token and ``subject``.
        """
        items = self._batch_items(body, content_type)
        if isinstance(items, WebResponse):
            return StreamResponse.plain(items)
        firsts = self._answer_items(items, subject)

        def answer(index: int, outcome: JobStatus | BaseException) -> WebResponse:
            return self._settled(items[index], outcome)

        jobs = [(item.job_id, item.job_class) for item in items]
        pace = {"interval": interval, "heartbeat": heartbeat, "give_up_after": give_up_after}
        stream = MultiStreamResponse(firsts, jobs, answer, **pace)
        return _bounded(stream, limits, items[0].token if items else None, subject)

    async def astream_jobs(
        self,
        body: bytes | bytearray | str,
        *,
        content_type: str | None,
        subject: str | None = None,
        interval: float = 0.05,
        heartbeat: float = 15.0,
        give_up_after: float = 60.0,
        limits: StreamLimits | None = None,
    ) -> StreamResponse:
        """Async twin of :meth:`stream_jobs`: the first poll happens in a worker thread."""
        ask = partial(
            self.stream_jobs,
            body,
            content_type=content_type,
            subject=subject,
            interval=interval,
            heartbeat=heartbeat,
            give_up_after=give_up_after,
            limits=limits,
        )
        return await asyncio.to_thread(ask)

    # -- cancel ----------------------------------------------------------------------------

    def cancel(
        self,
        job_id: str,
        job_class: str | None = None,
        *,
        body: bytes | bytearray | str,
        content_type: str | None,
        subject: str | None = None,
    ) -> WebResponse:
        """Answer ``POST {prefix}/cancel/{job_id}[/{job_class}]`` (see :mod:`.cancel`).

        ``body`` is the request's (``{"token": ...}``; a few KB at most, see :mod:`.cancel`),
        ``content_type`` its ``Content-Type`` header. The job is cancelled with
        :func:`immortus.cancel`, in this thread.
        """
        if not self.secured:
            return self._not_secured(job_id)
        token = parse_token(body, content_type)
        if isinstance(token, WebResponse):
            return token
        refused = self._refusal(job_id, job_class, token, subject)
        if refused is None:
            refused = cancel_refusal(job_id, job_class)
        if refused is not None:
            return refused
        try:
            done = run_cancel(job_id, job_class)
        except Exception as exc:  # noqa: BLE001  # every failure becomes a bodied 500/503
            return self._failure(job_id, job_class, exc)
        if isinstance(done, BaseException):
            return not_cancellable(job_id, str(done))
        return answer_cancellation(job_id, job_class, done)

    async def acancel(
        self,
        job_id: str,
        job_class: str | None = None,
        *,
        body: bytes | bytearray | str,
        content_type: str | None,
        subject: str | None = None,
    ) -> WebResponse:
        """Async twin of :meth:`cancel`: the job is cancelled in a worker thread."""
        ask = partial(
            self.cancel, job_id, job_class, body=body, content_type=content_type, subject=subject
        )
        return await asyncio.to_thread(ask)

    # -- render ----------------------------------------------------------------------------

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
            _log_once(logging.ERROR, f"immortus: render_job: {_NOT_SECURED}")
            return WebResponse(500, {})
        found_id, found_class = _identify(job)
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
            _warn_if_untracked(job_class)
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


def _bounded(
    stream: StreamResponse, limits: StreamLimits | None, token: str | None, subject: str | None
) -> StreamResponse:
    """``stream`` admitted under ``limits`` (or as it is without limits)."""
    return stream if limits is None else admit(stream, limits, token=token, subject=subject)


def _identify(job: object) -> tuple[object, str | None]:
    """Return the job id (unchecked) and the job class (or ``None``) ``job`` carries."""
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


def _warn_if_untracked(job_class: str) -> None:
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
    job: object,
    job_class: str | None = None,
    *,
    subject: str | None = None,
    verifier: Verifier | None = None,
) -> WebResponse:
    """:meth:`Verifier.render_job` of ``verifier``, by default the current settings' one.

    What every adapter's ``render_job_response`` answers, in its framework's response type.
    """
    return (verifier or get_verifier()).render_job(job, job_class, subject=subject)


Answer = TypeVar("Answer")
Answer_co = TypeVar("Answer_co", covariant=True)


class JobResponder(Protocol[Answer_co]):
    """An adapter's ``render_job_response``: :func:`render_job` in the framework's response."""

    def __call__(
        self,
        job: object,
        job_class: str | None = None,
        *,
        verifier: Verifier | None = None,
        subject: str | None = None,
    ) -> Answer_co:
        """Return the framework's response of :func:`render_job` for ``job``."""
        ...


def job_responder(convert: Callable[[WebResponse], Answer], note: str) -> JobResponder[Answer]:
    """Return the ``render_job_response`` of an adapter whose responses ``convert`` makes.

    ``note`` ends its docstring: what a view of that framework passes as ``subject``.
    """

    def render_job_response(
        job: object,
        job_class: str | None = None,
        *,
        verifier: Verifier | None = None,
        subject: str | None = None,
    ) -> Answer:
        return convert(render_job(job, job_class, subject=subject, verifier=verifier))

    render_job_response.__doc__ = (
        ":func:`immortus.web.render_job` as a response, for an enqueue view: "
        f"``{{job_id, job_class[, token]}}``, or 500 ``{{}}``.\n\n{note}"
    )
    return render_job_response

"""The framework-neutral web core: verify one job, a group or a batch, stream them, render them.

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

A group (:mod:`immortus.groups`) is answered by :meth:`Verifier.verify_group` and as an item of
a batch or a multi-job stream, with its own token (:meth:`Verifier.render_group`); its codes
are in :mod:`.groups`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

from immortus import config, query, runtime
from immortus.cancelling import cancel as cancel_job
from immortus.exceptions import (
    EndpointsNotSecured,
    InvalidInput,
    NotCancellable,
    StoreUnavailable,
    StrategyError,
    UntrackedJobClass,
)
from immortus.status import JobStatus, State
from immortus.validation import check_job_class, check_job_id
from immortus.web.batch import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    BatchItem,
    GroupItem,
    Item,
    is_json_media_type,
    parse_batch,
)
from immortus.web.cancel import (
    answer_cancellation,
    cancel_refusal,
    not_cancellable,
    parse_token,
)
from immortus.web.groups import GroupAnswers, read_group
from immortus.web.multistream import MultiStreamResponse
from immortus.web.options import wants_history
from immortus.web.recent import RecentStatuses
from immortus.web.render import JobRendering
from immortus.web.responses import (
    STORE_UNAVAILABLE,
    WebResponse,
    bad_request,
    error_body,
    job_answer,
    unknown_job,
    unsupported_media_type,
)
from immortus.web.secured import NOT_SECURED, OPEN, log_once
from immortus.web.stream import StreamResponse
from immortus.web.stream_limits import StreamLimits, admit
from immortus.web.tokens import JobTokens
from immortus.web.twins import in_thread

__all__ = [
    "Verifier",
    "get_verifier",
    "render_group",
    "render_job",
]

logger = logging.getLogger("immortus.web")

_STRATEGY_FAILED = "the job's tracking strategy failed"
_SERVER_FAILED = "the server could not answer"


class Verifier(GroupAnswers, JobRendering):
    """Answers the verify, batch, stream, cancel and group requests; renders jobs and groups.

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
            log_once(logging.WARNING, OPEN)

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
            raise EndpointsNotSecured(NOT_SECURED)

    def _not_secured(self, job_id: object) -> WebResponse:
        """The 500 of every request while the routes are not secured (logged once)."""
        log_once(logging.ERROR, f"immortus: {NOT_SECURED}")
        return WebResponse(500, error_body(job_id, "EndpointsNotSecured", NOT_SECURED))

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
            return WebResponse(503, error_body(job_id, "StoreUnavailable", STORE_UNAVAILABLE))
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

    averify_batch = in_thread(verify_batch)

    def _batch_items(
        self, body: bytes | bytearray | str, content_type: str | None
    ) -> list[Item] | WebResponse:
        """The jobs a batch body asks about, or the 500, 415 or 400 refusing the whole body."""
        if not self.secured:
            return self._not_secured(None)
        if not is_json_media_type(content_type):
            return unsupported_media_type()
        try:
            return parse_batch(body, max_items=self.max_batch, max_bytes=MAX_BATCH_BYTES)
        except InvalidInput as exc:
            return bad_request(None, str(exc))

    def _answer_items(self, items: Sequence[Item], subject: str | None) -> list[WebResponse]:
        """Each item's answer, in order: the known jobs asked in one ``settle_many``.

        A group is read on its own (one store read each, whatever its size).
        """
        answers = [self._item_refusal(item, subject) for item in items]
        jobs = [
            (index, item)
            for index, item in enumerate(items)
            if answers[index] is None and isinstance(item, BatchItem)
        ]
        if jobs:
            asked = [(item.job_id, item.job_class) for _, item in jobs]
            settled: Sequence[JobStatus | BaseException]
            try:
                settled = query.settle_many(asked)
            except Exception as exc:  # noqa: BLE001  # the whole lookup failed
                settled = [exc] * len(asked)
            for (index, item), outcome in zip(jobs, settled, strict=True):
                answers[index] = self._settled(item, outcome)
        for index, asked_group in enumerate(items):
            if answers[index] is None and isinstance(asked_group, GroupItem):
                answers[index] = read_group(asked_group.group_id)
        return [answer for answer in answers if answer is not None]

    def _item_refusal(self, item: Item, subject: str | None) -> WebResponse | None:
        """:meth:`_refusal` of a job item, :meth:`group_refusal` of a group item."""
        if isinstance(item, GroupItem):
            return self.group_refusal(item.group_id, item.token, subject)
        return self._refusal(*item, subject)

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

    astream = in_thread(stream)

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
            item = items[index]
            assert isinstance(item, BatchItem)  # noqa: S101  # groups are read, not fed
            return self._settled(item, outcome)

        jobs = [
            (item.job_id, item.job_class) if isinstance(item, BatchItem) else None for item in items
        ]
        groups = {
            index: partial(read_group, item.group_id)
            for index, item in enumerate(items)
            if isinstance(item, GroupItem)
        }
        pace = {"interval": interval, "heartbeat": heartbeat, "give_up_after": give_up_after}
        stream = MultiStreamResponse(firsts, jobs, answer, groups=groups, **pace)
        return _bounded(stream, limits, items[0].token if items else None, subject)

    astream_jobs = in_thread(stream_jobs)

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
            done = cancel_job(job_id, job_class)
            verified = self._answer(job_id, job_class, done.status)
        except NotCancellable as exc:
            return not_cancellable(job_id, str(exc))
        except Exception as exc:  # noqa: BLE001  # every failure becomes a bodied 500/503
            return self._failure(job_id, job_class, exc)
        return answer_cancellation(done.outcome, verified)

    acancel = in_thread(cancel)


def _bounded(
    stream: StreamResponse, limits: StreamLimits | None, token: str | None, subject: str | None
) -> StreamResponse:
    """``stream`` admitted under ``limits`` (or as it is without limits)."""
    return stream if limits is None else admit(stream, limits, token=token, subject=subject)


class DefaultVerifier(runtime.LockedPart):
    """The verifier of the current settings: a :mod:`runtime <immortus.runtime>` part.

    Made at first use, it forgets its verifier whenever the settings change (and at a reset).
    """

    def __init__(self) -> None:
        super().__init__()
        self.verifier: Verifier | None = None
        config.on_change(self.reset)

    def reset(self) -> None:
        with self.lock:
            self.verifier = None


def get_verifier() -> Verifier:
    """Return the verifier of the current settings (made again when they change)."""
    default = runtime.part(DefaultVerifier)
    verifier = default.verifier
    if verifier is not None:
        return verifier
    with default.lock:
        if default.verifier is None:
            default.verifier = Verifier.from_config()
        return default.verifier


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


def render_group(
    group_id: object, *, subject: str | None = None, verifier: Verifier | None = None
) -> WebResponse:
    """:meth:`Verifier.render_group` of ``verifier``, by default the current settings' one."""
    return (verifier or get_verifier()).render_group(group_id, subject=subject)

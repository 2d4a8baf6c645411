"""The framework-neutral dashboard: a request in, a response out, one table of routes.

A framework module (:mod:`.starlette`, :mod:`.flask`, :mod:`.django`) turns its request into a
:class:`DashboardRequest`, having asked the app's authorisation check, and sends back the
:class:`DashboardResponse`. Paths are relative to the prefix the app mounted the dashboard at.

==============================  =================================================================
``GET  /``                      the overview: counts, throughput, losses, outbox backlog
``GET  /jobs``                  the list: ``state queue class since id cursor`` (400 if bad)
``GET  /jobs/{job_id}``         one job: the record, attempts, the error with its traceback
``POST /prune``                 delete expired records (CSRF token required)
``POST /jobs/{job_id}/cancel``  :func:`immortus.cancel` the job (CSRF token required)
``GET  /changes?since=N``       JSON: the store's change cursor and the ids written since ``N``
``GET  /rows?id=..&id=..``      JSON: the list rows of those jobs, re-rendered
``GET  /metrics``               Prometheus text (needs ``immortus[prometheus]``)
``GET  /static/{name}``         the stylesheet and the script
==============================  =================================================================

An unauthorised request gets 403 and nothing else, whatever the path.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from typing import Final

import immortus
from immortus.cancelling import CancelOutcome
from immortus.exceptions import (
    ConfigurationError,
    InvalidInput,
    NotCancellable,
    StoreUnavailable,
    StrategyError,
    StrategyNotFound,
)
from immortus.store_strategy import StoreStrategy
from immortus.stores.base import Store
from immortus.validation import check_job_id
from immortus.web.dashboard import pages
from immortus.web.dashboard.counts import Counts, read_counts
from immortus.web.dashboard.csrf import COOKIE, FIELD, CsrfTokens
from immortus.web.dashboard.filters import parse_filter
from immortus.web.dashboard.listing import list_jobs

__all__ = ["Dashboard", "DashboardRequest", "DashboardResponse", "mount_prefix"]

#: Headers of every page: never cached, never framed, no script or style from elsewhere.
PAGE_HEADERS: Final = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'",
    ),
)
#: Seconds the overview's counts are reused before the store is read again.
COUNTS_MAX_AGE: Final = 5.0
#: Most rows one ``/rows`` request re-renders.
MAX_ROWS: Final = 200
#: The request header that asks for a page's ``<main>`` only (the live updates send it).
PARTIAL_HEADER: Final = "x-immortus-partial"
#: What the cancel page says of each outcome of :func:`immortus.cancel`.
_OUTCOMES: Final[Mapping[CancelOutcome, str]] = {
    CancelOutcome.UNKNOWN: "Nobody has a record of this job; nothing was done.",
    CancelOutcome.ALREADY_COMPLETED: "The job had already ended; it keeps its ending.",
    CancelOutcome.CANCELLING: "The job was asked to stop; it has not stopped yet.",
    CancelOutcome.CANCELLED: "The job is cancelled.",
}
_STATIC: Final = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


@dataclass(frozen=True, slots=True)
class DashboardRequest:
    """What the dashboard needs of a request, read by the framework module.

    ``csrf_field``: the name and value a form must carry when the framework protects actions
    itself (Django); ``None`` and the dashboard's own signed double-submit token is used.
    """

    method: str
    path: str
    query: Sequence[tuple[str, str]] = ()
    form: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    authorized: bool = False
    csrf_field: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DashboardResponse:
    """Status, headers (a name may repeat) and body, for any framework."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` header's value."""
        return next(value for name, value in self.headers if name == "Content-Type")


class Dashboard:
    """Serves the dashboard's pages about ``store`` (default: the configured store).

    ``prefix`` is where the app mounted it (links are made under it). ``csrf_key`` signs the
    action tokens (default: the ``secret_key`` configured when a token is made or checked,
    else a random key of this process).
    """

    def __init__(
        self, *, prefix: str = "", store: Store | None = None, csrf_key: bytes | None = None
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self._store = store
        self.csrf = CsrfTokens(csrf_key or configured_key)
        self._counts: tuple[float, Counts] | None = None
        self._lock = threading.Lock()
        #: How many reads of the store failed, for the metrics.
        self.store_errors = 0

    @property
    def store(self) -> Store:
        """The store read.

        Raises:
            ConfigurationError: store tracking is disabled and no store was given.
        """
        store = self._store or immortus.get_store()
        if store is None:
            raise ConfigurationError("the dashboard needs a store; store tracking is disabled")
        return store

    def counts(self) -> Counts:
        """The overview's counts, read again at most every :data:`COUNTS_MAX_AGE` seconds.

        Raises:
            StoreUnavailable: the store cannot be reached.
        """
        with self._lock:
            now = time.monotonic()
            if self._counts is None or now - self._counts[0] > COUNTS_MAX_AGE:
                self._counts = (now, read_counts(self.store, now=datetime.now(UTC)))
            return self._counts[1]

    def handle(self, request: DashboardRequest) -> DashboardResponse:
        """Answer ``request``: 403 unless authorised, 400 bad input, 503 store unreachable.

        500 when the dashboard is not set up (no store; the metrics' library missing: the
        message names the ``pip install`` command).
        """
        if not request.authorized:
            return self._page(403, "Forbidden", pages.error_main("Forbidden", "Not authorised."))
        try:
            return self._route(request)
        except InvalidInput as exc:
            return self._page(400, "Bad request", pages.error_main("Bad request", str(exc)))
        except StoreUnavailable as exc:
            with self._lock:
                self.store_errors += 1
            message = f"The store cannot be reached: {exc}"
            return self._page(503, "Unavailable", pages.error_main("Unavailable", message))
        except ConfigurationError as exc:  # no store, or the metrics' library is missing
            return self._page(500, "Not set up", pages.error_main("Not set up", str(exc)))

    def _route(self, request: DashboardRequest) -> DashboardResponse:
        """Dispatch on the path, which the framework has already percent-decoded."""
        path = "/" + request.path.strip("/")
        method = request.method.upper()
        if method == "POST":
            return self._action(request, path)
        if method not in ("GET", "HEAD"):
            return self._not_allowed("GET, HEAD")
        routes: dict[str, Callable[[DashboardRequest], DashboardResponse]] = {
            "/": self._overview,
            "/jobs": self._list,
            "/changes": self._changes,
            "/rows": self._rows,
            "/metrics": self._metrics,
        }
        if path in routes:
            return routes[path](request)
        if path.startswith("/jobs/"):
            return self._job(request, path.removeprefix("/jobs/"))
        if path.startswith("/static/") and path.removeprefix("/static/") in _STATIC:
            return self._static(path.removeprefix("/static/"))
        return self._not_found()

    def _action(self, request: DashboardRequest, path: str) -> DashboardResponse:
        if path == "/prune":
            return self._prune(request)
        if path.startswith("/jobs/") and path.endswith("/cancel"):
            return self._cancel(request, path[len("/jobs/") : -len("/cancel")])
        known = path in ("/", "/jobs", "/changes", "/rows", "/metrics") or path.startswith("/jobs/")
        return self._not_allowed("GET, HEAD") if known else self._not_found()

    def _not_found(self) -> DashboardResponse:
        return self._page(404, "Not found", pages.error_main("Not found", "No such page."))

    # -- pages --------------------------------------------------------------------------

    def _csrf(self, request: DashboardRequest) -> tuple[tuple[str, str], list[tuple[str, str]]]:
        """The form field for actions, and the cookie to set when the dashboard made one."""
        if request.csrf_field is not None:
            return request.csrf_field, []
        token = request.cookies.get(COOKIE)
        if token is not None and self.csrf.valid(token):
            return (FIELD, token), []
        token = self.csrf.make()
        path = self.prefix or "/"
        cookie = f"{COOKIE}={token}; Path={path}; HttpOnly; SameSite=Strict"
        return (FIELD, token), [("Set-Cookie", cookie)]

    def _overview(self, request: DashboardRequest) -> DashboardResponse:
        field_, cookies = self._csrf(request)
        main = pages.overview_main(self.prefix, self.counts(), field_)
        return self._page(200, "Overview", main, request, live={"live": "overview"}, extra=cookies)

    def _list(self, request: DashboardRequest) -> DashboardResponse:
        flt = parse_filter(_single(request.query))
        page = list_jobs(self.store, flt, now=datetime.now(UTC))
        main = pages.list_main(self.prefix, flt, page)
        return self._page(200, "Jobs", main, request, live={"live": "rows"})

    def _job(self, request: DashboardRequest, job_id: str) -> DashboardResponse:
        check_job_id(job_id)
        job = self.store.get(job_id)
        if job is None:
            message = "No record of this job: it never existed here, or its record expired."
            return self._page(404, "Unknown job", pages.error_main("Unknown job", message))
        # What immortus.status(job_id, history=True) adds, read from the store shown here.
        job = replace(job, history=StoreStrategy(self.store).history(job_id))
        field_, cookies = self._csrf(request)
        main = pages.job_main(self.prefix, job, field_)
        live = {"live": "job", "job": job_id}
        return self._page(200, f"Job {job_id}", main, request, live=live, extra=cookies)

    def _refused(self, request: DashboardRequest) -> DashboardResponse | None:
        """403 when an action's form lacks the page's token (Django checks its own)."""
        if request.csrf_field is not None or self.csrf.accepts(
            request.cookies.get(COOKIE), request.form.get(FIELD)
        ):
            return None
        message = "The form's token is missing or wrong: reload the page and try again."
        return self._page(403, "Refused", pages.error_main("Refused", message))

    def _prune(self, request: DashboardRequest) -> DashboardResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        store = self.store
        lost = store.reap_lost()
        pruned = store.prune()
        with self._lock:
            self._counts = None
        message = f"Recorded {lost} lost job(s); deleted {pruned} expired record(s)."
        main = pages.error_main("Pruned", message) + f'<p><a href="{self.prefix}/">Back</a></p>'
        return self._page(200, "Pruned", main)

    def _cancel(self, request: DashboardRequest, job_id: str) -> DashboardResponse:
        check_job_id(job_id)
        refused = self._refused(request)
        if refused is not None:
            return refused
        record = self.store.get(job_id)
        job_class = None if record is None else record.job_class
        back = f'<p><a href="{pages.job_href(self.prefix, job_id)}">Back to the job</a></p>'
        try:
            try:
                outcome = immortus.cancel(job_id, job_class).outcome
            except StrategyNotFound:  # a class this process does not track: its record alone
                outcome = immortus.cancel(job_id).outcome
        except NotCancellable as exc:
            main = pages.error_main("Not cancellable", str(exc)) + back
            return self._page(409, "Not cancellable", main)
        except StrategyError as exc:
            main = pages.error_main("Cancel failed", str(exc)) + back
            return self._page(500, "Cancel failed", main)
        main = pages.error_main("Cancel", _OUTCOMES[outcome]) + back
        return self._page(200, "Cancel", main)

    # -- live updates ---------------------------------------------------------------------

    def _changes(self, request: DashboardRequest) -> DashboardResponse:
        since = _single(request.query).get("since", "")
        if since and not since.isdigit():
            raise InvalidInput("since must be a change cursor (a whole number)")
        cursor, ids = self.store.changes_since(int(since) if since else None)
        changed = None if ids is None else sorted(ids)
        return _json(200, {"cursor": cursor, "ids": changed})

    def _rows(self, request: DashboardRequest) -> DashboardResponse:
        ids = [value for name, value in request.query if name == "id"]
        if len(ids) > MAX_ROWS:
            raise InvalidInput(f"at most {MAX_ROWS} rows at a time")
        found = self.store.get_many([check_job_id(job_id) for job_id in ids])
        rendered = {job_id: pages.row(self.prefix, job) for job_id, job in found.items()}
        return _json(200, {"rows": rendered})

    def _metrics(self, request: DashboardRequest) -> DashboardResponse:
        from immortus.web.dashboard.metrics import render_metrics  # noqa: PLC0415 - optional

        media_type, body = render_metrics(self)
        return DashboardResponse(200, (("Content-Type", media_type), *PAGE_HEADERS[:2]), body)

    def _static(self, name: str) -> DashboardResponse:
        data = resources.files("immortus.web.dashboard").joinpath("static", name).read_bytes()
        headers = (("Content-Type", f"{_STATIC[name]}; charset=utf-8"), PAGE_HEADERS[1])
        return DashboardResponse(200, (*headers, ("Cache-Control", "max-age=300")), data)

    # -- helpers ----------------------------------------------------------------------------

    def _page(
        self,
        status: int,
        title: str,
        main: str,
        request: DashboardRequest | None = None,
        *,
        live: Mapping[str, str] | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> DashboardResponse:
        partial = request is not None and request.headers.get(PARTIAL_HEADER) == "1"
        html = main if partial else pages.layout(self.prefix, title, main, live=live)
        headers = (("Content-Type", "text/html; charset=utf-8"), *PAGE_HEADERS, *extra)
        return DashboardResponse(status, headers, html.encode())

    def _not_allowed(self, allow: str) -> DashboardResponse:
        response = self._page(405, "Not allowed", pages.error_main("Not allowed", "Wrong method."))
        return DashboardResponse(405, (*response.headers, ("Allow", allow)), response.body)


def mount_prefix(prefix: str, authorize: object) -> str:
    """Return ``prefix`` as a framework mounts it (``/a/b``, or ``""`` for the root).

    Raises:
        ConfigurationError: ``authorize`` is missing or not callable (the dashboard fails closed).
    """
    if not callable(authorize):
        raise ConfigurationError("the dashboard needs authorize=callable(request) -> bool")
    return "/" + prefix.strip("/") if prefix.strip("/") else ""


def configured_key() -> bytes | None:
    """The configured ``secret_key`` as bytes, read when a token is made or checked."""
    secret = immortus.get_config().secret_key
    return secret.encode() if isinstance(secret, str) else secret


def _single(query: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The query as a dict.

    Raises:
        InvalidInput: a parameter is given twice.
    """
    params: dict[str, str] = {}
    for name, value in query:
        if name in params:
            raise InvalidInput(f"{name[:40]!r} is given more than once")
        params[name] = value
    return params


def _json(status: int, body: object) -> DashboardResponse:
    headers = (("Content-Type", "application/json"), *PAGE_HEADERS[:2])
    return DashboardResponse(status, headers, json.dumps(body).encode())

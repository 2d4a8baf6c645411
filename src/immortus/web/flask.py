"""The Flask adapter: every immortus route under one prefix, in one line.

    from immortus.web.flask import immortus_blueprint

    app.register_blueprint(immortus_blueprint())

Needs the ``immortus[flask]`` extra. Each view makes one call to the web core (see
``docs/web.md``) and sends back what it answers. Under WSGI a request holds a worker thread: a
stream waits in that thread for the change feed (:mod:`immortus.web.feed`) to report its job's
changes, until the job is completed or the client leaves.

The routes are those of :data:`immortus.web.routes.ROUTES` (verify, batch, streams, cancel,
groups, the script).

The token travels as the ``token`` query parameter. ``subject`` binds tokens to a user or
session (see ``docs/flask.md``). Another method on a route (``HEAD`` and
``OPTIONS`` included) answers 405 with an ``Allow`` header, and a path under the prefix that is
no route answers 404; both bodies are JSON ``{"job_id": null, "error": {"type", "message"}}``.
A job id or job class holding ``/`` (even percent-encoded) cannot be named in a path: servers
decode ``%2F`` before routing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from immortus.exceptions import MissingDependency
from immortus.web.core import Verifier, get_verifier
from immortus.web.options import read_query
from immortus.web.responders import JobResponder, job_responder
from immortus.web.responses import WebResponse, method_not_allowed, not_found
from immortus.web.routes import ROUTES, Route, read_capped
from immortus.web.script import (
    SCRIPT_HEADERS,
    SCRIPT_MEDIA_TYPE,
    STATIC_DIR,
    script_missing,
    script_path,
)
from immortus.web.stream import StreamResponse
from immortus.web.stream_limits import WSGI_LIMITS, StreamLimits

try:
    from flask import Blueprint, Request, Response, request, send_file
    from werkzeug.exceptions import ClientDisconnected
except ImportError as exc:
    raise MissingDependency("flask", "flask") from exc

__all__ = ["STATIC_DIR", "immortus_blueprint", "render_job_response"]

#: The methods every route is registered for, so that a wrong one gets immortus's JSON 405
#: rather than Werkzeug's HTML one (an extension method, such as WebDAV's, still gets the latter).
_ROUTED_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")

_View = Callable[..., Response]
#: Reads the subject tokens are bound to from the request (``subject(request)``, the shape of
#: every adapter), or from ``flask.request`` / ``flask.session`` (``subject()``, no argument).
SubjectOf = Callable[[Request], str | None] | Callable[[], str | None]


def _respond(answer: WebResponse) -> Response:
    return Response(answer.content(), answer.status, dict(answer.headers))


#: :func:`immortus.web.render_job` as a Flask ``Response``, for an enqueue view.
render_job_response: JobResponder[Response] = job_responder(
    _respond,
    "Pass as ``subject`` what the blueprint's ``subject`` function returns in this request. "
    "Needs no request context.",
)


def _read_body(route: Route) -> bytes:
    """The request body, at most ``route.body_limit`` bytes of it (see :func:`read_capped`)."""
    return read_capped(request.stream.read, route.body_limit, (ClientDisconnected,))


def _takes_request(subject: Callable[..., Any]) -> bool:
    """Whether ``subject`` takes the request as its one argument (else it takes none)."""
    try:
        signature = inspect.signature(subject)
    except (TypeError, ValueError):  # a builtin without a signature: called as documented
        return True
    try:
        signature.bind(None)
    except TypeError:
        return False
    return True


def _stream_answer(answer: StreamResponse) -> Response:
    """A stream as a Flask response: Werkzeug closes its frames when the client leaves."""
    return Response(answer.frames(), answer.status, dict(answer.headers))


def _only(method: str, view: _View) -> _View:
    """Return ``view`` answering ``method`` alone, and the JSON 405 to any other."""

    def endpoint(**params: str) -> Response:
        if request.method != method:
            return _respond(method_not_allowed(method))
        return view(**params)

    return endpoint


def _no_route(**_: str) -> Response:
    return _respond(not_found())


def _query() -> tuple[str | None, str | None]:
    """The ``token`` and ``history`` query parameters (:func:`read_query`).

    Flask's parsed query (``request.args``) is made only when :func:`read_query` asks it: the
    JavaScript client's plain ``token=...`` needs no parsing.
    """
    return read_query(request.environ.get("QUERY_STRING", ""), lambda: request.args)


def _token() -> str | None:
    """The ``token`` query parameter."""
    return _query()[0]


class _Views:
    """The views, bound to a verifier (or to the configured one, looked up per request)."""

    def __init__(
        self,
        verifier: Verifier | None,
        subject: SubjectOf | None,
        streams: StreamLimits | None = None,
    ) -> None:
        self.verifier = verifier
        self.subject_of = subject
        self.with_request = subject is not None and _takes_request(subject)
        self.streams = streams or WSGI_LIMITS

    def _get(self) -> Verifier:
        return self.verifier or get_verifier()

    def _subject(self) -> str | None:
        subject: Callable[..., str | None] | None = self.subject_of
        if subject is None:
            return None
        return subject(request) if self.with_request else subject()

    def view(self, route: Route) -> _View:
        """The view of ``route``: one web-core call, its answer sent back."""
        if route.operation == "script":
            return self.script(route.path.lstrip("/"))
        views: dict[str, Callable[..., Response]] = {
            "verify": self.verify,
            "batch": self.batch,
            "stream": self.stream,
            "stream_jobs": self.stream_jobs,
            "cancel": self.cancel,
            "group": self.group,
        }
        return partial(views[route.operation], route)

    def verify(self, route: Route, job_id: str, job_class: str | None = None) -> Response:
        """``GET verify/{job_id}[/{job_class}]``: verify's answer for one job."""
        token, history = _query()
        answer = self._get().verify(
            job_id, job_class, token, subject=self._subject(), history=history
        )
        return _respond(answer)

    def batch(self, route: Route) -> Response:
        """``POST verify``: one answer per job, in order; a body over the cap is a 400."""
        body = _read_body(route)
        content_type = request.headers.get("Content-Type")
        answer = self._get().verify_batch(body, content_type=content_type, subject=self._subject())
        return _respond(answer)

    def stream(self, route: Route, job_id: str, job_class: str | None = None) -> Response:
        """``GET stream/{job_id}[/{job_class}]``: SSE frames, or 503/429 past the stream limits.

        Werkzeug closes the response when a write fails because the client left (other WSGI
        servers do the same, as PEP 3333 asks): that ends the stream and frees its slot.
        """
        token, subject = _token(), self._subject()
        verifier = self._get()
        answer = verifier.stream(job_id, job_class, token, subject=subject, limits=self.streams)
        return _stream_answer(answer)

    def stream_jobs(self, route: Route) -> Response:
        """``POST stream``: one event stream for every job of a batch body (or a JSON refusal)."""
        body = _read_body(route)
        content_type = request.headers.get("Content-Type")
        answer = self._get().stream_jobs(
            body, content_type=content_type, subject=self._subject(), limits=self.streams
        )
        return _stream_answer(answer)

    def cancel(self, route: Route, job_id: str, job_class: str | None = None) -> Response:
        """``POST cancel/{job_id}[/{job_class}]``: the cancel's outcome and the job's body."""
        body = _read_body(route)
        content_type = request.headers.get("Content-Type")
        answer = self._get().cancel(
            job_id, job_class, body=body, content_type=content_type, subject=self._subject()
        )
        return _respond(answer)

    def group(self, route: Route, group_id: str) -> Response:
        """``GET groups/{group_id}``: the group's aggregate body."""
        answer = self._get().verify_group(group_id, _token(), subject=self._subject())
        return _respond(answer)

    def script(self, name: str) -> _View:
        """``GET immortus.js`` / ``immortus.mjs``: the file ``name``, or a JSON 404 if missing."""

        def send() -> Response:
            path = script_path(STATIC_DIR, name)  # looked up per request: tests replace it
            if path is None:
                return _respond(not_found(script_missing(name)))
            response = send_file(path, mimetype=SCRIPT_MEDIA_TYPE, conditional=True, etag=True)
            response.headers.update(SCRIPT_HEADERS)
            return response

        return send


def immortus_blueprint(
    prefix: str = "/immortus",
    *,
    verifier: Verifier | None = None,
    name: str = "immortus",
    subject: SubjectOf | None = None,
    streams: StreamLimits | None = None,
) -> Blueprint:
    """Return a blueprint of every immortus route under ``prefix``, to register in one line.

    ``verifier`` answers the requests; by default the one of the current settings
    (:func:`immortus.web.get_verifier`). The routes serve only with a secret key, or declared
    open: registering the blueprint raises otherwise, so call ``immortus.configure`` before
    ``app.register_blueprint`` (a key configured later is used from then on).
    ``subject``, when given, is called with the request (``subject(request)``, as in every
    adapter; a function of no argument is called without one and reads ``flask.request`` or
    ``flask.session``) at each request of a job (verify, batch, streams, cancel), before the
    token is checked, and returns the subject its tokens must be bound to: what the enqueue
    view passed to :func:`render_job_response` (``None``: no subject). What it raises
    propagates to Flask's error handling. ``streams`` bounds the event streams
    (:class:`~immortus.web.stream_limits.StreamLimits`; default
    :data:`~immortus.web.stream_limits.WSGI_LIMITS`: 2 per process, each holding a thread).
    The endpoints are named after :data:`~immortus.web.routes.ROUTES` (``{name}.verify``,
    ``{name}.verify_class``, ``{name}.batch``, ``{name}.stream``, ``{name}.stream_class``,
    ``{name}.stream_jobs``, ``{name}.cancel``, ``{name}.cancel_class``, ``{name}.group``,
    ``{name}.script``, ``{name}.module``) for ``url_for``: to mount
    the routes twice, make two blueprints with two names. A path under a non-empty prefix that
    is no route answers immortus's JSON 404; with ``prefix=""`` the app keeps its own 404.

    Raises:
        ValueError: ``name`` is empty or holds a dot (Flask's rule for blueprint names).
        EndpointsNotSecured: raised by ``app.register_blueprint``, when the verifier has no
            secret key and the routes were not declared open.
    """
    views = _Views(verifier, subject, streams)
    path = prefix.strip("/")
    blueprint = Blueprint(name, __name__, url_prefix=f"/{path}" if path else None)
    add = partial(blueprint.add_url_rule, methods=_ROUTED_METHODS, provide_automatic_options=False)
    for route in ROUTES:
        rule = route.path_with(lambda name: f"<{name}>")
        add(rule, route.name, _only(route.method, views.view(route)))
    blueprint.record(lambda _: views._get().require_secured())
    if path:  # the prefix itself, and any path below it that no route above matched
        add("/", "no_route", _no_route, strict_slashes=False)
        add("/<path:rest>", "no_route_below", _no_route)
    return blueprint

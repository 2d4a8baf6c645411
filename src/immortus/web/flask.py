"""The Flask adapter: every immortus route under one prefix, in one line.

    from immortus.web.flask import immortus_blueprint

    app.register_blueprint(immortus_blueprint())

Needs the ``immortus[flask]`` extra. Each view makes one call to the web core (see
``docs/web.md``) and sends back what it answers. Under WSGI a request holds a worker thread: a
stream waits in that thread for the change feed (:mod:`immortus.web.feed`) to report its job's
changes, until the job is completed or the client leaves.

==========================================  ===============================================
``GET  {prefix}/verify/{job_id}``           the job's verify body (200, 400, 404, 500, 503)
``GET  {prefix}/verify/{job_id}/{class}``   the same, asked with the class's inline strategy
``POST {prefix}/verify``                    a batch: ``{"jobs": [body, ...]}`` in order (JSON only)
``GET  {prefix}/stream/{job_id}[/{class}]`` Server-Sent Events until the job is completed
``GET  {prefix}/immortus.js``               the JavaScript client, or 404 if not installed
``GET  {prefix}/immortus.mjs``              the same client as an ES module
==========================================  ===============================================

The token travels as the ``token`` query parameter. ``subject`` binds tokens to a user or
session (see ``docs/flask.md``). Another method on a route (``HEAD`` and
``OPTIONS`` included) answers 405 with an ``Allow`` header, and a path under the prefix that is
no route answers 404; both bodies are JSON ``{"job_id": null, "error": {"type", "message"}}``.
A job id or job class holding ``/`` (even percent-encoded) cannot be named in a path: servers
decode ``%2F`` before routing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import IO, Final

from immortus.exceptions import MissingDependency
from immortus.web.batch import MAX_BATCH_BYTES
from immortus.web.core import Verifier, get_verifier, render_job
from immortus.web.responses import WebResponse, method_not_allowed, not_found
from immortus.web.script import (
    SCRIPT_HEADERS,
    SCRIPT_MEDIA_TYPE,
    SCRIPTS,
    STATIC_DIR,
    script_missing,
    script_path,
)
from immortus.web.stream_limits import WSGI_LIMITS, StreamLimits, admit

try:
    from flask import Blueprint, Response, request, send_file
    from werkzeug.exceptions import ClientDisconnected
except ImportError as exc:
    raise MissingDependency("flask", "flask") from exc

__all__ = ["STATIC_DIR", "immortus_blueprint", "render_job_response"]

#: The methods every route is registered for, so that a wrong one gets immortus's JSON 405
#: rather than Werkzeug's HTML one (an extension method, such as WebDAV's, still gets the latter).
_ROUTED_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")

_View = Callable[..., Response]
#: Reads the subject tokens are bound to from ``flask.request`` / ``flask.session``.
SubjectOf = Callable[[], str | None]


def _respond(answer: WebResponse) -> Response:
    return Response(answer.content(), answer.status, dict(answer.headers))


def render_job_response(
    job: object,
    job_class: str | None = None,
    *,
    verifier: Verifier | None = None,
    subject: str | None = None,
) -> Response:
    """:func:`immortus.web.render_job` as a Flask response, for an enqueue view.

    Pass as ``subject`` what the blueprint's ``subject`` function returns in this request.
    Needs no request context.
    """
    return _respond(render_job(job, job_class, subject=subject, verifier=verifier))


def _read_body(stream: IO[bytes], limit: int) -> bytes:
    """Return the request body; once ``limit`` bytes are in, stop: the rest is never read.

    An empty body if the client left before sending it all.
    """
    body = bytearray()
    try:
        while len(body) < limit:
            chunk = stream.read(limit - len(body))
            if not chunk:
                break
            body += chunk
    except ClientDisconnected:  # nobody is left to read the answer
        return b""
    return bytes(body)


def _only(method: str, view: _View) -> _View:
    """Return ``view`` answering ``method`` alone, and the JSON 405 to any other."""

    def endpoint(**params: str) -> Response:
        if request.method != method:
            return _respond(method_not_allowed(method))
        return view(**params)

    return endpoint


def _no_route(**_: str) -> Response:
    return _respond(not_found())


def _token() -> str | None:
    """The ``token`` query parameter (the query string is parsed only when there is one)."""
    return request.args.get("token") if request.environ.get("QUERY_STRING") else None


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
        self.streams = streams or WSGI_LIMITS

    def _get(self) -> Verifier:
        return self.verifier or get_verifier()

    def _subject(self) -> str | None:
        return None if self.subject_of is None else self.subject_of()

    def verify(self, job_id: str, job_class: str | None = None) -> Response:
        """``GET verify/{job_id}[/{job_class}]``: verify's answer for one job."""
        token = _token()
        return _respond(self._get().verify(job_id, job_class, token, subject=self._subject()))

    def batch(self) -> Response:
        """``POST verify``: one answer per job, in order; a body over the cap is a 400."""
        body = _read_body(request.stream, MAX_BATCH_BYTES + 1)
        content_type = request.headers.get("Content-Type")
        answer = self._get().verify_batch(body, content_type=content_type, subject=self._subject())
        return _respond(answer)

    def stream(self, job_id: str, job_class: str | None = None) -> Response:
        """``GET stream/{job_id}[/{job_class}]``: SSE frames, or 503/429 past the stream limits.

        Werkzeug closes the response when a write fails because the client left (other WSGI
        servers do the same, as PEP 3333 asks): that ends the stream and frees its slot.
        """
        token, subject = _token(), self._subject()
        answer = self._get().stream(job_id, job_class, token, subject=subject)
        answer = admit(answer, self.streams, token=token, subject=subject)
        return Response(answer.frames(), answer.status, dict(answer.headers))

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
    ``subject``, when given, is called (without arguments, inside the request context: it reads
    ``flask.request`` or ``flask.session``) at each verify, batch and stream request, before
    the token is checked, and returns the subject its tokens must be bound to: what the enqueue
    view passed to :func:`render_job_response` (``None``: no subject). What it raises
    propagates to Flask's error handling. ``streams`` bounds the event streams
    (:class:`~immortus.web.stream_limits.StreamLimits`; default
    :data:`~immortus.web.stream_limits.WSGI_LIMITS`: 2 per process, each holding a thread).
    The endpoints are ``{name}.verify``, ``{name}.verify_class``, ``{name}.batch``,
    ``{name}.stream``, ``{name}.stream_class``, ``{name}.script`` (``immortus.js``) and
    ``{name}.module`` (``immortus.mjs``) for ``url_for``: to mount
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
    routes: list[tuple[str, str, str, _View]] = [  # (endpoint, rule, method, view)
        ("batch", "/verify", "POST", views.batch),
        ("verify", "/verify/<job_id>", "GET", views.verify),
        ("verify_class", "/verify/<job_id>/<job_class>", "GET", views.verify),
        ("stream", "/stream/<job_id>", "GET", views.stream),
        ("stream_class", "/stream/<job_id>/<job_class>", "GET", views.stream),
    ]
    routes += [(kind, f"/{file}", "GET", views.script(file)) for kind, file in SCRIPTS.items()]
    add = partial(blueprint.add_url_rule, methods=_ROUTED_METHODS, provide_automatic_options=False)
    for endpoint, rule, method, view in routes:
        add(rule, endpoint, _only(method, view))
    blueprint.record(lambda _: views._get().require_secured())
    if path:  # the prefix itself, and any path below it that no route above matched
        add("/", "no_route", _no_route, strict_slashes=False)
        add("/<path:rest>", "no_route_below", _no_route)
    return blueprint

"""The views behind ``immortus.web.django.urls``: one web-core call each.

==========================================  ===============================================
``GET  verify/<job_id>[/<job_class>]``      :func:`verify`: the job's verify body
``POST verify``                             :func:`batch`: ``{"jobs": [body, ...]}`` (JSON only)
``GET  stream/<job_id>[/<job_class>]``      :func:`stream`: Server-Sent Events until completed
``POST stream``                             :func:`stream_jobs`: one event stream for many jobs
``POST cancel/<job_id>[/<job_class>]``      :func:`cancel`: cancel the job (CSRF-protected)
``GET  groups/<group_id>``                  :func:`group`: the group's aggregate body
``GET  immortus.js``                        :func:`script`: the JavaScript client, or 404
``GET  immortus.mjs``                       :func:`script`: the same client as an ES module
anything else under the prefix              :func:`no_route`: a JSON 404
==========================================  ===============================================

No view but :func:`cancel` checks CSRF: none changes anything (the batch and the multi-job
stream only read, and their jobs are authorised by their tokens, not by the session), and a
wrong method must get its JSON 405, not the CSRF middleware's 403. :func:`cancel` changes a
job, so its ``POST`` passes Django's own CSRF check (``csrf_protect``, the middleware's check,
made even if the project removed the middleware): the JavaScript client sends the
``X-CSRFToken`` header (from the page's CSRF cookie or meta tag); without it Django answers
403 (its ``CSRF_FAILURE_VIEW``).

Each view asks :func:`immortus.web.get_verifier` at each request, so ``immortus.configure``
may run after Django starts, and checks tokens against
the request's subject (:func:`~immortus.web.django.subject.subject_of`: the
``IMMORTUS_SUBJECT`` setting).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate

from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, HttpRequest, StreamingHttpResponse, UnreadablePostError
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import etag

from immortus.web import script as _script
from immortus.web.core import get_verifier
from immortus.web.django.responses import json_response
from immortus.web.django.settings import stream_limits
from immortus.web.django.subject import subject_of
from immortus.web.options import read_query
from immortus.web.responses import method_not_allowed, not_found
from immortus.web.routes import ROUTES, read_capped
from immortus.web.script import SCRIPT_HEADERS, SCRIPT_MEDIA_TYPE, script_missing, script_path
from immortus.web.stream import StreamResponse

__all__ = [
    "STATIC_DIR",
    "batch",
    "cancel",
    "group",
    "no_route",
    "script",
    "stream",
    "stream_jobs",
    "verify",
]

#: Where :func:`script` looks for ``immortus.js`` (at each request).
STATIC_DIR: Path = _script.STATIC_DIR

View = Callable[Concatenate[HttpRequest, ...], HttpResponseBase]

#: Most body bytes each operation reads (see :attr:`immortus.web.routes.Route.body_limit`).
_BODY_LIMITS = {route.operation: route.body_limit for route in ROUTES}


def _only(method: str, *, csrf: bool = False) -> Callable[[View], View]:
    """Make a view answer ``method`` only: any other (``HEAD`` too) gets a JSON 405.

    With ``csrf``, a request of ``method`` passes Django's CSRF check first (``csrf_protect``:
    the project's middleware's check, made even without the middleware); a wrong method gets
    its 405 unchecked, as it changes nothing.
    """

    def decorate(view: View) -> View:
        answer = csrf_protect(view) if csrf else view

        @functools.wraps(view)
        def checked(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
            if request.method != method:
                return json_response(method_not_allowed(method))
            return answer(request, *args, **kwargs)

        return csrf_exempt(checked)

    return decorate


@_only("GET")
def verify(request: HttpRequest, job_id: str, job_class: str | None = None) -> HttpResponseBase:
    """``GET verify/<job_id>[/<job_class>]``: verify's answer for one job."""
    subject = subject_of(request)
    token, history = _query(request)
    answer = get_verifier().verify(job_id, job_class, token, subject=subject, history=history)
    return json_response(answer)


def _query(request: HttpRequest) -> tuple[str | None, str | None]:
    """The ``token`` and ``history`` query parameters (:func:`read_query`)."""
    return read_query(request.META.get("QUERY_STRING", ""), lambda: request.GET)


def _token(request: HttpRequest) -> str | None:
    """The ``token`` query parameter."""
    return _query(request)[0]


@_only("POST")
def batch(request: HttpRequest) -> HttpResponseBase:
    """``POST verify``: one answer per job, in order; a body over the cap is a 400, unread."""
    body = _read_capped(request, _BODY_LIMITS["batch"])
    content_type = request.META.get("CONTENT_TYPE")
    answer = get_verifier().verify_batch(
        body, content_type=content_type, subject=subject_of(request)
    )
    return json_response(answer)


def _read_capped(request: HttpRequest, limit: int) -> bytes:
    """Return the request body, reading at most ``limit`` bytes of it, whatever its type.

    An empty body if the client left while sending it (nobody is left to read the answer).
    """
    return read_capped(request.read, limit, (UnreadablePostError,))


def _event_stream(request: HttpRequest, answer: StreamResponse) -> HttpResponseBase:
    """A stream as a Django response: frames for a WSGI thread, or for an ASGI event loop."""
    frames = answer.aframes() if isinstance(request, ASGIRequest) else answer.frames()
    return StreamingHttpResponse(frames, status=answer.status, headers=dict(answer.headers))


@_only("GET")
def stream(request: HttpRequest, job_id: str, job_class: str | None = None) -> HttpResponseBase:
    """``GET stream/<job_id>[/<job_class>]``: SSE frames, or 503/429 past the stream limits.

    Under WSGI the frames are a generator the server thread iterates (it waits for the change
    feed, :mod:`immortus.web.feed`); closing the response (the server does when the client is
    gone) closes the generator, which leaves the feed and frees the stream's slot. Under ASGI
    they are an async iterator: the feed's thread asks the store, and Django stops iterating
    when the client disconnects. The limits are the server kind's, changed by
    ``IMMORTUS["streams"]`` (:func:`~immortus.web.django.settings.stream_limits`).
    """
    token, subject = _token(request), subject_of(request)
    limits = stream_limits(asgi=isinstance(request, ASGIRequest))
    answer = get_verifier().stream(job_id, job_class, token, subject=subject, limits=limits)
    return _event_stream(request, answer)


@_only("POST")
def stream_jobs(request: HttpRequest) -> HttpResponseBase:
    """``POST stream``: one event stream for every job of a batch body (or a JSON refusal).

    Served and bounded as :func:`stream` is; the stream takes one slot.
    """
    body = _read_capped(request, _BODY_LIMITS["stream_jobs"])
    limits = stream_limits(asgi=isinstance(request, ASGIRequest))
    answer = get_verifier().stream_jobs(
        body,
        content_type=request.META.get("CONTENT_TYPE"),
        subject=subject_of(request),
        limits=limits,
    )
    return _event_stream(request, answer)


@_only("POST", csrf=True)
def cancel(request: HttpRequest, job_id: str, job_class: str | None = None) -> HttpResponseBase:
    """``POST cancel/<job_id>[/<job_class>]``: the cancel's outcome and the job's verify body.

    Guarded by Django's CSRF check (a request without the CSRF token gets its 403).
    """
    body = _read_capped(request, _BODY_LIMITS["cancel"])
    answer = get_verifier().cancel(
        job_id,
        job_class,
        body=body,
        content_type=request.META.get("CONTENT_TYPE"),
        subject=subject_of(request),
    )
    return json_response(answer)


@_only("GET")
def group(request: HttpRequest, group_id: str) -> HttpResponseBase:
    """``GET groups/<group_id>``: the group's aggregate body."""
    answer = get_verifier().verify_group(group_id, _token(request), subject=subject_of(request))
    return json_response(answer)


def _script_etag(request: HttpRequest, path: Path) -> str | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return f'"{found.st_mtime_ns:x}-{found.st_size:x}"'


@etag(_script_etag)
def _send_script(request: HttpRequest, path: Path) -> HttpResponseBase:
    """The file at ``path``; the ``etag`` decorator answers 304 to a matching If-None-Match."""
    try:
        handle = path.open("rb")
    except OSError:  # removed since it was found
        return json_response(not_found(script_missing(path.name)))
    return FileResponse(handle, content_type=SCRIPT_MEDIA_TYPE, headers=dict(SCRIPT_HEADERS))


@_only("GET")
def script(request: HttpRequest, name: str = "immortus.js") -> HttpResponseBase:
    """``GET immortus.js`` / ``immortus.mjs``: the file ``name`` with an ETag, or a JSON 404."""
    path = script_path(STATIC_DIR, name)
    if path is None:
        return json_response(not_found(script_missing(name)))
    response = _send_script(request, path)
    if response.status_code == 304:  # a 304 carries the caching headers a 200 would
        for header, value in SCRIPT_HEADERS.items():
            response[header] = value
    return response


@csrf_exempt
def no_route(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Any method on a path under the prefix that is no route: a JSON 404."""
    return json_response(not_found())

"""The Starlette / FastAPI adapter: every immortus route under one prefix, in one line.

    from immortus.web.asgi import immortus_routes

    app = Starlette(routes=[immortus_routes()])        # Starlette
    app.router.routes.append(immortus_routes())        # FastAPI (or a Starlette app made earlier)

Needs the ``immortus[starlette]`` extra. Each route makes one call to the web core (see
``docs/web.md``) and sends back what it answers; nothing here blocks the event loop: strategies
and stores are asked in worker threads (except reads that cannot wait, see
:meth:`~immortus.stores.base.Store.get_nowait`), and a stream waits on a future that the change
feed's thread resolves (:mod:`immortus.web.feed`).

==========================================  ===============================================
``GET  {prefix}/verify/{job_id}``           the job's verify body (200, 400, 404, 500, 503)
``GET  {prefix}/verify/{job_id}/{class}``   the same, asked with the class's inline strategy
``POST {prefix}/verify``                    a batch: ``{"jobs": [body, ...]}`` in order (JSON only)
``GET  {prefix}/stream/{job_id}[/{class}]`` Server-Sent Events until the job is completed
``GET  {prefix}/immortus.js``               the JavaScript client, or 404 if not installed
``GET  {prefix}/immortus.mjs``              the same client as an ES module
==========================================  ===============================================

The token travels as the ``token`` query parameter; ``subject`` binds tokens to a user or
session (see ``docs/web.md``, "Binding tokens to a user"). Another method on a route answers 405
with an ``Allow`` header, and a path under the prefix that is no route answers 404; both bodies
are JSON ``{"job_id": null, "error": {"type", "message"}}``. A job id or job class holding ``/``
(even percent-encoded) cannot be named in a path: servers decode ``%2F`` before routing.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Final, TypeAlias

from immortus.exceptions import MissingDependency
from immortus.web.batch import MAX_BATCH_BYTES
from immortus.web.core import Verifier, get_verifier, render_job
from immortus.web.responses import JSON_HEADERS, WebResponse, method_not_allowed, not_found
from immortus.web.script import (
    SCRIPT_HEADERS,
    SCRIPT_MEDIA_TYPE,
    SCRIPTS,
    STATIC_DIR,
    script_missing,
)
from immortus.web.stream import StreamResponse
from immortus.web.stream_limits import ASGI_LIMITS, StreamLimits, admit

try:
    import anyio
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route, Router
    from starlette.types import Receive, Scope, Send
    from starlette.websockets import WebSocketClose
except ImportError as exc:
    raise MissingDependency("starlette", "starlette") from exc

__all__ = ["STATIC_DIR", "immortus_routes", "render_job_response"]

Handler = Callable[[Request], Awaitable[Response]]
#: Reads the subject tokens are bound to (a user id, a session key) from a request; may be async.
SubjectOf: TypeAlias = Callable[[Request], str | Awaitable[str | None] | None]


#: :data:`JSON_HEADERS` as Starlette sends them: lower-case names, Latin-1 bytes.
_JSON_RAW_HEADERS: Final = tuple(
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in JSON_HEADERS.items()
)


class _Encoded(JSONResponse):
    """A JSON response whose body the web core has already encoded.

    An answer with the usual :data:`JSON_HEADERS` (every one but a 405) gets its raw headers
    from a copy of :data:`_JSON_RAW_HEADERS` and its ``content-length``: exactly what
    ``Response.init_headers`` would build, without building it at each request.
    """

    def __init__(self, answer: WebResponse) -> None:
        body = answer.content()
        if answer.headers is not JSON_HEADERS or answer.status < 200 or answer.status in (204, 304):
            super().__init__(body, answer.status, dict(answer.headers))
            return
        self.status_code = answer.status
        self.background = None
        self.body = body
        self.raw_headers = [*_JSON_RAW_HEADERS, (b"content-length", b"%d" % len(body))]

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else super().render(content)


def _json(answer: WebResponse) -> JSONResponse:
    return _Encoded(answer)


def _token(request: Request) -> str | None:
    """The ``token`` query parameter (the query string is parsed only when there is one)."""
    return request.query_params.get("token") if request.scope.get("query_string") else None


def render_job_response(
    job: object,
    job_class: str | None = None,
    *,
    verifier: Verifier | None = None,
    subject: str | None = None,
) -> JSONResponse:
    """:func:`immortus.web.render_job` as a Starlette response, for an enqueue view.

    Pass as ``subject`` what the routes' ``subject`` function reads from this request.
    """
    return _json(render_job(job, job_class, subject=subject, verifier=verifier))


class _EventStream(StreamingResponse):
    """Sends a core :class:`StreamResponse`; the frames stop the moment the client leaves.

    The disconnect is watched whatever ASGI version the server speaks, and the frames'
    generator is closed (it leaves the change feed), and the stream closed (it gives back its
    slot), when the response ends for any reason.
    """

    def __init__(self, stream: StreamResponse) -> None:
        super().__init__(stream, stream.status, dict(stream.headers))
        self.events = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def respond() -> None:
                with contextlib.suppress(OSError):  # the client left (ASGI 2.4 servers)
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(respond)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()

    async def stream_response(self, send: Send) -> None:
        frames = aiter(self.body_iterator)
        try:
            start = {"type": "http.response.start", "status": self.status_code}
            await send({**start, "headers": self.raw_headers})
            async for frame in frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if isinstance(frames, AsyncGenerator):
                with anyio.CancelScope(shield=True):
                    await frames.aclose()
            self.events.close()


class _Endpoint:
    """One route as an ASGI app: its handler for ``method``, a JSON 405 for any other."""

    def __init__(self, method: str, handler: Handler) -> None:
        self.method = method
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method == self.method:
            response = await self.handler(request)
        else:
            response = _json(method_not_allowed(self.method))
        await response(scope, receive, send)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await WebSocketClose()(scope, receive, send)
        return
    await _json(not_found())(scope, receive, send)


async def _read_body(request: Request, limit: int) -> bytes:
    """Return the request body; once ``limit`` bytes are in, stop: the rest is never read.

    The answer holds at most one chunk more than ``limit``; an empty body if the client left.
    """
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) >= limit:
                break
    except ClientDisconnect:  # nobody is left to read the answer
        return b""
    return bytes(body)


class _Routes:
    """The handlers, bound to a verifier (or to the configured one, looked up per request)."""

    def __init__(
        self,
        verifier: Verifier | None,
        subject: SubjectOf | None,
        streams: StreamLimits | None = None,
    ) -> None:
        self.verifier = verifier
        self.subject_of = subject
        self.streams = streams or ASGI_LIMITS

    def _get(self) -> Verifier:
        return self.verifier or get_verifier()

    async def _subject(self, request: Request) -> str | None:
        if self.subject_of is None:
            return None
        found = self.subject_of(request)
        return await found if inspect.isawaitable(found) else found

    async def verify(self, request: Request) -> Response:
        """``GET verify/{job_id}[/{job_class}]``: verify's answer for one job."""
        params = request.path_params
        token = _token(request)
        subject = await self._subject(request)
        answer = await self._get().averify(
            params["job_id"], params.get("job_class"), token, subject=subject
        )
        return _json(answer)

    async def batch(self, request: Request) -> Response:
        """``POST verify``: one answer per job, in order; a body over the cap is a 400."""
        body = await _read_body(request, MAX_BATCH_BYTES + 1)
        subject = await self._subject(request)
        content_type = request.headers.get("content-type")
        answer = await self._get().averify_batch(body, content_type=content_type, subject=subject)
        return _json(answer)

    async def stream(self, request: Request) -> Response:
        """``GET stream/{job_id}[/{job_class}]``: SSE frames, or 503/429 past the stream limits."""
        params = request.path_params
        token = _token(request)
        subject = await self._subject(request)
        answer = await self._get().astream(
            params["job_id"], params.get("job_class"), token, subject=subject
        )
        return _EventStream(admit(answer, self.streams, token=token, subject=subject))

    def script(self, name: str) -> Handler:
        """``GET immortus.js`` / ``immortus.mjs``: the file ``name``, or a JSON 404 if missing."""

        async def send(request: Request) -> Response:
            path = STATIC_DIR / name  # looked up at each request: tests replace STATIC_DIR
            if not await anyio.Path(path).is_file():
                return _json(not_found(script_missing(name)))
            return FileResponse(path, media_type=SCRIPT_MEDIA_TYPE, headers=dict(SCRIPT_HEADERS))

        return send


def immortus_routes(
    prefix: str = "/immortus",
    *,
    verifier: Verifier | None = None,
    subject: SubjectOf | None = None,
    streams: StreamLimits | None = None,
) -> Mount:
    """Return every immortus route under ``prefix``, to put in an app's routes in one line.

    ``verifier`` answers the requests; by default the one of the current settings
    (:func:`immortus.web.get_verifier`, so ``immortus.configure`` may run after this call).
    Until a secret key is configured (or the routes are declared open), every request answers
    500 ``EndpointsNotSecured``; an unsecured ``verifier`` given here is refused at once.
    ``subject``, when given, is called with each verify, batch and stream request (before the
    token is checked) and returns the subject its tokens must be bound to: the user id or
    session key the enqueue view passed to :func:`render_job_response` (``None``: no subject).
    It may be a coroutine function. What it raises propagates to the app's error handling.
    ``streams`` bounds the event streams (:class:`~immortus.web.stream_limits.StreamLimits`;
    default :data:`~immortus.web.stream_limits.ASGI_LIMITS`: 256 per process).
    The routes are named ``immortus:verify``, ``immortus:verify_class``, ``immortus:batch``,
    ``immortus:stream``, ``immortus:stream_class``, ``immortus:script`` and ``immortus:module``
    for ``url_for``.

    Raises:
        EndpointsNotSecured: ``verifier`` has no secret key and was not declared open.
    """
    if verifier is not None:
        verifier.require_secured()
    routes = _Routes(verifier, subject, streams)
    # (name, path, method, handler); no two paths match the same request, so the busiest
    # route, verify with a job class, comes first: the router tries routes in order.
    endpoints: list[tuple[str, str, str, Handler]] = [
        ("verify_class", "/verify/{job_id}/{job_class}", "GET", routes.verify),
        ("verify", "/verify/{job_id}", "GET", routes.verify),
        ("batch", "/verify", "POST", routes.batch),
        ("stream", "/stream/{job_id}", "GET", routes.stream),
        ("stream_class", "/stream/{job_id}/{job_class}", "GET", routes.stream),
    ]
    endpoints += [(kind, f"/{name}", "GET", routes.script(name)) for kind, name in SCRIPTS.items()]
    router = Router(
        [Route(path, _Endpoint(method, run), name=name) for name, path, method, run in endpoints],
        redirect_slashes=False,
        default=_not_found,
    )
    path = prefix.strip("/")
    mount = Mount(f"/{path}" if path else "", app=router, name="immortus")
    # Starlette's pattern stops at a line break (``.*``), so a path with an encoded one (%0A)
    # would fall out of the prefix to the app's plain-text 404: match it, and answer in JSON.
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount

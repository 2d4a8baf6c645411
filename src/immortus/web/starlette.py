"""The Starlette / FastAPI adapter: every immortus route under one prefix, in one line.

    from immortus.web.starlette import immortus_routes

    app = Starlette(routes=[immortus_routes()])        # Starlette
    app.router.routes.append(immortus_routes())        # FastAPI (or a Starlette app made earlier)

Needs the ``immortus[starlette]`` extra. Each route makes one call to the web core (see
``docs/web.md``) and sends back what it answers; nothing here blocks the event loop: strategies
and stores are asked in worker threads (except reads that cannot wait, see
:meth:`~immortus.stores.base.Store.get_nowait`), and a stream waits on a future that the change
feed's thread resolves (:mod:`immortus.web.feed`).

The routes are those of :data:`immortus.web.routes.ROUTES` (verify, batch, streams, cancel,
groups, the script). ``immortus.web.asgi`` is the old name of this module; it still works.

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
from immortus.web.core import Verifier, get_verifier
from immortus.web.options import read_query
from immortus.web.responders import JobResponder, job_responder
from immortus.web.responses import JSON_HEADERS, WebResponse, method_not_allowed, not_found
from immortus.web.routes import ROUTES, Route, aread_capped
from immortus.web.script import SCRIPT_HEADERS, SCRIPT_MEDIA_TYPE, STATIC_DIR, script_missing
from immortus.web.stream import StreamResponse
from immortus.web.stream_limits import ASGI_LIMITS, StreamLimits

try:
    import anyio
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Router
    from starlette.routing import Route as StarletteRoute
    from starlette.types import Receive, Scope, Send
    from starlette.websockets import WebSocketClose
except ImportError as exc:
    raise MissingDependency("starlette", "starlette") from exc

__all__ = ["STATIC_DIR", "SubjectOf", "immortus_routes", "render_job_response"]

#: What a handler answers: a response, or the web core's JSON answer (sent without one).
Answer: TypeAlias = Response | WebResponse
Handler = Callable[[Request], Awaitable[Answer]]
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


async def _send_json(answer: WebResponse, scope: Scope, receive: Receive, send: Send) -> None:
    """Send ``answer`` as :class:`_Encoded` would, without making a response object.

    An answer with the usual :data:`JSON_HEADERS` (every one but a 405) is two ASGI messages
    with the prebuilt raw headers; any other goes through :class:`_Encoded`.
    """
    if answer.headers is not JSON_HEADERS or answer.status < 200 or answer.status in (204, 304):
        await _Encoded(answer)(scope, receive, send)
        return
    body = answer.content()
    headers = [*_JSON_RAW_HEADERS, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _query(request: Request) -> tuple[str | None, str | None]:
    """The ``token`` and ``history`` query parameters (:func:`read_query`).

    Starlette's parsed query (``request.query_params``) is made only when :func:`read_query`
    asks it: the JavaScript client's plain ``token=...`` needs no parsing.
    """
    query: bytes = request.scope.get("query_string", b"")
    return read_query(query.decode("latin-1"), lambda: request.query_params)


def _token(request: Request) -> str | None:
    """The ``token`` query parameter."""
    return _query(request)[0]


#: :func:`immortus.web.render_job` as a Starlette ``JSONResponse``, for an enqueue view.
render_job_response: JobResponder[JSONResponse] = job_responder(
    _json, "Pass as ``subject`` what the routes' ``subject`` function reads from this request."
)


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
        if scope["method"] == self.method:
            answer = await self.handler(Request(scope, receive))
        else:
            answer = method_not_allowed(self.method)
        if isinstance(answer, WebResponse):
            await _send_json(answer, scope, receive, send)
        else:
            await answer(scope, receive, send)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await WebSocketClose()(scope, receive, send)
        return
    await _json(not_found())(scope, receive, send)


async def _read_body(request: Request, route: Route) -> bytes:
    """The request body, at most ``route.body_limit`` bytes of it (see :func:`aread_capped`)."""
    return await aread_capped(request.stream(), route.body_limit, (ClientDisconnect,))


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

    def handler(self, route: Route) -> Handler:
        """The handler of ``route``: one web-core call, its answer sent back."""
        if route.operation == "script":
            return self.script(route.path.lstrip("/"))
        handlers: dict[str, Callable[[Request, Route], Awaitable[Answer]]] = {
            "verify": self.verify,
            "batch": self.batch,
            "stream": self.stream,
            "stream_jobs": self.stream_jobs,
            "cancel": self.cancel,
            "group": self.group,
        }
        answer = handlers[route.operation]
        return lambda request: answer(request, route)

    async def verify(self, request: Request, route: Route) -> WebResponse:
        """``GET verify/{job_id}[/{job_class}]``: verify's answer for one job."""
        params = request.path_params
        token, history = _query(request)
        subject = await self._subject(request)
        return await self._get().averify(
            params["job_id"], params.get("job_class"), token, subject=subject, history=history
        )

    async def batch(self, request: Request, route: Route) -> WebResponse:
        """``POST verify``: one answer per job, in order; a body over the cap is a 400."""
        body = await _read_body(request, route)
        subject = await self._subject(request)
        content_type = request.headers.get("content-type")
        return await self._get().averify_batch(body, content_type=content_type, subject=subject)

    async def stream(self, request: Request, route: Route) -> Response:
        """``GET stream/{job_id}[/{job_class}]``: SSE frames, or 503/429 past the stream limits."""
        params = request.path_params
        token = _token(request)
        subject = await self._subject(request)
        answer = await self._get().astream(
            params["job_id"], params.get("job_class"), token, subject=subject, limits=self.streams
        )
        return _EventStream(answer)

    async def stream_jobs(self, request: Request, route: Route) -> Response:
        """``POST stream``: one event stream for every job of a batch body (or a JSON refusal)."""
        body = await _read_body(request, route)
        subject = await self._subject(request)
        content_type = request.headers.get("content-type")
        answer = await self._get().astream_jobs(
            body, content_type=content_type, subject=subject, limits=self.streams
        )
        return _EventStream(answer)

    async def cancel(self, request: Request, route: Route) -> WebResponse:
        """``POST cancel/{job_id}[/{job_class}]``: the cancel's outcome and the job's body."""
        params = request.path_params
        body = await _read_body(request, route)
        subject = await self._subject(request)
        content_type = request.headers.get("content-type")
        return await self._get().acancel(
            params["job_id"],
            params.get("job_class"),
            body=body,
            content_type=content_type,
            subject=subject,
        )

    async def group(self, request: Request, route: Route) -> WebResponse:
        """``GET groups/{group_id}``: the group's aggregate body."""
        token = _token(request)
        subject = await self._subject(request)
        return await self._get().averify_group(
            request.path_params["group_id"], token, subject=subject
        )

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
    ``subject``, when given, is called with each request of a job (verify, batch, streams,
    cancel) before the token is checked, and returns the subject its tokens must be bound to:
    the user id or session key the enqueue view passed to :func:`render_job_response`
    (``None``: no subject).
    It may be a coroutine function. What it raises propagates to the app's error handling.
    ``streams`` bounds the event streams (:class:`~immortus.web.stream_limits.StreamLimits`;
    default :data:`~immortus.web.stream_limits.ASGI_LIMITS`: 256 per process).
    The routes are named after :data:`~immortus.web.routes.ROUTES` (``immortus:verify``,
    ``immortus:verify_class``, ``immortus:batch``, ``immortus:stream``, ``immortus:stream_class``,
    ``immortus:stream_jobs``, ``immortus:cancel``, ``immortus:cancel_class``,
    ``immortus:group``, ``immortus:script``, ``immortus:module``) for ``url_for``.

    Raises:
        EndpointsNotSecured: ``verifier`` has no secret key and was not declared open.
    """
    if verifier is not None:
        verifier.require_secured()
    routes = _Routes(verifier, subject, streams)
    endpoints = [(route, _Endpoint(route.method, routes.handler(route))) for route in ROUTES]
    router = Router(
        [StarletteRoute(route.path, app, name=route.name) for route, app in endpoints],
        redirect_slashes=False,
        default=_not_found,
    )
    path = prefix.strip("/")
    mount = Mount(f"/{path}" if path else "", app=router, name="immortus")
    # Starlette's pattern stops at a line break (``.*``), so a path with an encoded one (%0A)
    # would fall out of the prefix to the app's plain-text 404: match it, and answer in JSON.
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount

"""The dashboard in Starlette or FastAPI, behind the app's ``authorize(request) -> bool``.

    from immortus.web.dashboard.starlette import dashboard_routes

    app = Starlette(routes=[dashboard_routes("/ops/jobs", authorize=is_operator)])

``authorize`` is required (it may be async); a request it refuses gets 403. Store reads run in
a worker thread. Needs the ``immortus[starlette]`` extra.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from immortus.exceptions import MissingDependency
from immortus.stores.base import Store
from immortus.web.dashboard.core import Dashboard, DashboardRequest, DashboardResponse, mount_prefix

try:
    import anyio
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route, Router
except ImportError as exc:
    raise MissingDependency("starlette", "starlette") from exc

__all__ = ["Authorize", "dashboard_routes", "read_form", "to_response"]

#: The app's check: may this request see the dashboard? May be a coroutine function.
Authorize = Callable[[Request], bool | Awaitable[bool]]
#: Largest form body an action reads.
_MAX_FORM = 4096


def read_form(raw: bytes) -> dict[str, str]:
    """A small URL-encoded form's fields (the last value of each); ``{}`` when too big or bad."""
    if len(raw) > _MAX_FORM:
        return {}
    try:
        return dict(parse_qsl(raw.decode("ascii"), max_num_fields=8))
    except (UnicodeDecodeError, ValueError):
        return {}


def to_response(answer: DashboardResponse) -> Response:
    """The Starlette response of a dashboard answer."""
    response = Response(answer.body, status_code=answer.status)
    for name, value in answer.headers:
        response.headers.append(name, value)
    return response


def dashboard_routes(
    prefix: str,
    *,
    authorize: Authorize,
    store: Store | None = None,
    dashboard: Dashboard | None = None,
) -> Mount:
    """A ``Mount`` serving the dashboard under ``prefix`` to the requests ``authorize`` admits.

    Raises:
        ConfigurationError: ``authorize`` is missing or not callable (the dashboard fails closed).
    """
    prefix = mount_prefix(prefix, authorize)
    board = dashboard or Dashboard(prefix=prefix, store=store)

    async def endpoint(request: Request) -> Response:
        verdict = authorize(request)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        form: dict[str, str] = {}
        declared = request.headers.get("content-length", "0")
        small = declared.isdigit() and int(declared) <= _MAX_FORM
        if verdict is True and request.method == "POST" and small:
            form = read_form(await request.body())
        dash_request = DashboardRequest(
            method=request.method,
            path=request.path_params.get("path", ""),
            query=list(request.query_params.multi_items()),
            form=form,
            cookies=dict(request.cookies),
            headers={name.lower(): value for name, value in request.headers.items()},
            authorized=verdict is True,
        )
        answer = await anyio.to_thread.run_sync(board.handle, dash_request)
        return to_response(answer)

    methods = ["GET", "HEAD", "POST"]
    router = Router(
        routes=[
            Route("/", endpoint, methods=methods),
            Route("/{path:path}", endpoint, methods=methods),
        ]
    )
    return Mount(prefix, app=router)

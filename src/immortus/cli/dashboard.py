"""``immortus dashboard``: the dashboard on its own, like ``flower``, served by uvicorn.

Fails closed: without a token it binds only to a loopback address, and answers only requests
addressed to one (a page of another site cannot reach it by DNS rebinding). With a token
(``--token`` or ``$IMMORTUS_DASHBOARD_TOKEN``) it may bind anywhere, and each request must carry
it: ``Authorization: Bearer TOKEN`` (a Prometheus scrape), or the cookie the ``/login`` form
sets (a browser).
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import os
from typing import Final

from immortus.cli.codes import EXIT_OK, EXIT_USAGE, fail
from immortus.cli.commands import prepare, refuse_a_missing_store_file
from immortus.exceptions import MissingDependency

__all__ = ["TOKEN_ENV", "build_app", "dashboard", "is_loopback"]

#: The environment variable holding the token (safer than ``--token``, which ``ps`` shows).
TOKEN_ENV: Final = "IMMORTUS_DASHBOARD_TOKEN"  # noqa: S105 - a variable's name
#: The cookie the login form sets.
AUTH_COOKIE: Final = "immortus_dashboard_auth"
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 maybe in brackets) is this machine only."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(token: str | None) -> object:
    """The Starlette app of the standalone dashboard.

    Raises:
        MissingDependency: Starlette is not installed.
    """
    try:
        from starlette.applications import Starlette  # noqa: PLC0415
        from starlette.requests import Request  # noqa: PLC0415
        from starlette.responses import HTMLResponse, RedirectResponse, Response  # noqa: PLC0415
        from starlette.routing import Route  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependency("starlette", "dashboard") from exc
    from immortus.web.dashboard.starlette import dashboard_routes, read_form  # noqa: PLC0415

    def has_token(given: str | None) -> bool:
        return (
            token is not None
            and given is not None
            and hmac.compare_digest(given.encode(), token.encode())
        )

    def authorize(request: Request) -> bool:
        if token is None:
            return is_loopback(request.url.hostname or "")
        bearer = request.headers.get("authorization", "")
        given = bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None
        return has_token(given) or has_token(request.cookies.get(AUTH_COOKIE))

    form = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>immortus login</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head><body><main>'
        '<h1>immortus dashboard</h1><form method="post" action="/login">'
        '<label>Token <input name="token" type="password" autocomplete="current-password">'
        '</label> <button type="submit">Log in</button></form></main></body></html>'
    )

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(form, headers={"Cache-Control": "no-store"})
        given = read_form(await request.body()).get("token")
        if given is None or not has_token(given):
            return HTMLResponse(form, status_code=403)
        answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(AUTH_COOKIE, given, httponly=True, samesite="strict")
        return answer

    routes = [Route("/login", login, methods=["GET", "POST"])] if token else []
    return Starlette(routes=[*routes, dashboard_routes("", authorize=authorize)])


def dashboard(args: argparse.Namespace) -> int:
    """``immortus dashboard``: serve the dashboard until interrupted."""
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(args.host):
        message = (
            f"refusing to serve the dashboard on {args.host} without a token: give --token or "
            f"${TOKEN_ENV}, or serve on 127.0.0.1"
        )
        return fail(message, EXIT_USAGE)
    prepare(args)
    refuse_a_missing_store_file()
    app = build_app(token)
    try:
        import uvicorn  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependency("uvicorn", "dashboard") from exc
    print(f"immortus dashboard on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")  # type: ignore[arg-type]
    return EXIT_OK

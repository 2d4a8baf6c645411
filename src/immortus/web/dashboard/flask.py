"""The dashboard in Flask, behind the app's ``authorize(request) -> bool``.

    from immortus.web.dashboard.flask import dashboard_blueprint

    app.register_blueprint(dashboard_blueprint("/ops/jobs", authorize=is_operator))

``authorize`` is required; a request it refuses gets 403. Needs the ``immortus[flask]`` extra.
"""

from __future__ import annotations

from collections.abc import Callable

from immortus.exceptions import MissingDependency
from immortus.stores.base import Store
from immortus.web.dashboard.core import Dashboard, DashboardRequest, mount_prefix

try:
    from flask import Blueprint, Request, Response, request
except ImportError as exc:
    raise MissingDependency("flask", "flask") from exc

__all__ = ["dashboard_blueprint"]

_MAX_FORM = 4096


def dashboard_blueprint(
    prefix: str,
    *,
    authorize: Callable[[Request], bool],
    store: Store | None = None,
    name: str = "immortus_dashboard",
) -> Blueprint:
    """A blueprint serving the dashboard under ``prefix`` to the requests ``authorize`` admits.

    Raises:
        ConfigurationError: ``authorize`` is missing or not callable (the dashboard fails closed).
    """
    prefix = mount_prefix(prefix, authorize)
    board = Dashboard(prefix=prefix, store=store)
    blueprint = Blueprint(name, __name__, url_prefix=prefix or None)

    def view(path: str = "") -> Response:
        allowed = authorize(request) is True
        form: dict[str, str] = {}
        if allowed and request.method == "POST" and (request.content_length or 0) <= _MAX_FORM:
            form = dict(request.form.items())
        answer = board.handle(
            DashboardRequest(
                method=request.method,
                path=path,
                query=list(request.args.items(multi=True)),
                form=form,
                cookies=dict(request.cookies),
                headers={key.lower(): value for key, value in request.headers.items()},
                authorized=allowed,
            )
        )
        return Response(answer.body, status=answer.status, headers=list(answer.headers))

    methods = ["GET", "HEAD", "POST"]
    blueprint.add_url_rule("/", "index", view, methods=methods, strict_slashes=False)
    blueprint.add_url_rule("/<path:path>", "page", view, methods=methods)
    return blueprint

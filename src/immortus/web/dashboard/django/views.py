"""The dashboard's one Django view: staff (or a permission) only, Django's CSRF for actions."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.urls import reverse

from immortus.web.dashboard.core import Dashboard, DashboardRequest

__all__ = ["dashboard"]

_MAX_FORM = 4096


@cache
def _board(prefix: str) -> Dashboard:
    return Dashboard(prefix=prefix)


def _allowed(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    permission = getattr(settings, "IMMORTUS_DASHBOARD_PERMISSION", None)
    return bool(user.has_perm(permission)) if permission else bool(user.is_staff)


def dashboard(request: HttpRequest, path: str = "") -> HttpResponse:
    """Serve a dashboard page; refuse (403, or the login page when anonymous) anyone else.

    CSRF for ``POST`` is Django's own middleware's: this view is not exempt.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    allowed = _allowed(request)
    prefix = reverse("immortus_dashboard:index").rstrip("/")
    form: dict[str, str] = {}
    if (
        allowed
        and request.method == "POST"
        and int(request.META.get("CONTENT_LENGTH") or 0) <= _MAX_FORM
    ):
        form = {key: str(value) for key, value in request.POST.items()}
    answer = _board(prefix).handle(
        DashboardRequest(
            method=request.method or "GET",
            path=path,
            query=[(key, value) for key in request.GET for value in request.GET.getlist(key)],
            form=form,
            cookies=dict(request.COOKIES),
            headers={key.lower(): value for key, value in request.headers.items()},
            authorized=allowed,
            csrf_field=("csrfmiddlewaretoken", get_token(request)) if allowed else None,
        )
    )
    response = HttpResponse(answer.body, status=answer.status)
    for key, value in answer.headers:
        response[key] = value
    return response

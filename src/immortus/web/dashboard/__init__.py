"""The operator's dashboard: every tracked job of a store, for any queue, on one page.

Mount it in your app under a prefix of your choosing, behind your authorisation check (it is
never served without one), or run it on its own with ``immortus dashboard``:

- Starlette / FastAPI: :func:`immortus.web.dashboard.starlette.dashboard_routes`
- Flask: :func:`immortus.web.dashboard.flask.dashboard_blueprint`
- Django: ``path("ops/jobs/", include("immortus.web.dashboard.django.urls"))``

Importing this package loads no framework. See ``docs/dashboard.md``.
"""

from immortus.web.dashboard.core import Dashboard, DashboardRequest, DashboardResponse
from immortus.web.dashboard.counts import CountingStore, Counts, Tally

__all__ = [
    "CountingStore",
    "Counts",
    "Dashboard",
    "DashboardRequest",
    "DashboardResponse",
    "Tally",
]

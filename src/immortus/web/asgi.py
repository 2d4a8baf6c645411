"""The old name of :mod:`immortus.web.starlette`, kept so that existing imports work.

``from immortus.web.asgi import immortus_routes`` imports what ``immortus.web.starlette`` holds.
"""

from __future__ import annotations

from immortus.web.starlette import STATIC_DIR, SubjectOf, immortus_routes, render_job_response

__all__ = ["STATIC_DIR", "SubjectOf", "immortus_routes", "render_job_response"]

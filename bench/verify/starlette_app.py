"""The Starlette app that ``bench/verify/`` runs under uvicorn: immortus, a bare route.

``GET /immortus/...`` are immortus's routes (``immortus_routes()``) over the SQLite store named
by ``IMMORTUS_BENCH_STORE``. ``GET /bare/{job_id}/{job_class}`` is the baseline: a plain
Starlette route that answers a fixed JSON body as long as a verify body of a seeded job, with
the same headers, and does nothing else. Both go through the same server, the same app and the
same router, so the ratio of their rates is what immortus's verify costs. ``/kept/...`` are the
same routes answered by a verifier that keeps the statuses it read lately.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import immortus
from bench.verify.common import (
    ANSWER_STALENESS,
    KEPT_PREFIX,
    SECRET_KEY,
    app_settings,
    track_job_class,
)
from immortus.web.asgi import immortus_routes
from immortus.web.core import Verifier
from immortus.web.responses import JSON_HEADERS

__all__ = ["app"]

SETTINGS = app_settings()
track_job_class()


async def bare(request: Request) -> Response:
    """The baseline: the same path shape, a body of the same size, no work."""
    return Response(SETTINGS.bare, headers=dict(JSON_HEADERS))


immortus.configure(store=SETTINGS.store_url, secret_key=SECRET_KEY)
kept = Verifier(secret_key=SECRET_KEY, answer_staleness=ANSWER_STALENESS)
app = Starlette(
    routes=[
        immortus_routes(),
        immortus_routes(KEPT_PREFIX, verifier=kept),
        Route("/bare/{job_id}/{job_class}", bare),
    ]
)

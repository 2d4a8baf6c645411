"""The app that ``bench/verify_throughput.py`` runs under uvicorn: immortus's routes, a bare one.

``GET /immortus/...`` are immortus's routes (``immortus_routes()``) over the SQLite store named
by ``IMMORTUS_BENCH_STORE``. ``GET /bare/{job_id}`` is the baseline: a plain Starlette route that
answers a fixed JSON body as long as a verify body of a seeded job, with the same headers, and
does nothing else. Both go through the same server, the same router and the same path
parameters, so the ratio of their rates is what immortus's verify costs.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import immortus
from bench.verify_throughput import JOB_CLASS, bare_body
from immortus.web.asgi import immortus_routes
from immortus.web.responses import JSON_HEADERS

__all__ = ["app"]


@immortus.track(name=JOB_CLASS)
def report() -> None:
    """The job class the seeded jobs belong to (never run here)."""


BARE = bare_body(int(os.environ["IMMORTUS_BENCH_BODY_SIZE"]))


async def bare(request: Request) -> Response:
    """The baseline: the same path shape, a body of the same size, no work."""
    return Response(BARE, headers=dict(JSON_HEADERS))


immortus.configure(store=os.environ["IMMORTUS_BENCH_STORE"])
app = Starlette(routes=[immortus_routes(), Route("/bare/{job_id}/{job_class}", bare)])

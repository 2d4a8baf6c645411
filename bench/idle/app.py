"""The app each idle web process runs: ``immortus_routes()`` over ``IMMORTUS_BENCH_STORE``.

Declared open (no secret key): the benchmark measures the store, not the tokens. Push is on
unless ``IMMORTUS_PUSH=off`` is in the environment (:data:`immortus.web.feed.PUSH_ENV`).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

import immortus
from bench.idle import JOB_CLASS, STORE_VARIABLE
from immortus.web.asgi import immortus_routes

__all__ = ["app"]

immortus.declare(JOB_CLASS)
immortus.configure(store=os.environ[STORE_VARIABLE], open_endpoints=True, progress_interval=0)
app = Starlette(routes=[immortus_routes()])

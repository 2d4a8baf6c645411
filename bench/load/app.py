"""The app that ``bench/load/`` runs under uvicorn: immortus's routes, alone.

Settings come from the environment the load tool sets: ``IMMORTUS_LOAD_STORE`` (the store URL:
the load tool's SQLite file, or its Redis database) and ``IMMORTUS_LOAD_SECRET`` (the secret key
the tokens of the requests are signed with, so every request pays the token check a real
deployment pays). The routes are under ``bench.load.plan.PREFIX`` (``/jobs``); nothing else is
mounted: every request the load sends is one of immortus's.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

import immortus
from bench.load.plan import PREFIX
from immortus.web.asgi import immortus_routes

__all__ = ["app"]

immortus.configure(
    store=os.environ["IMMORTUS_LOAD_STORE"], secret_key=os.environ["IMMORTUS_LOAD_SECRET"]
)
app = Starlette(routes=[immortus_routes(PREFIX)])

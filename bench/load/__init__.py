"""Does the ASGI adapter hold 1 000 pollers and 200 SSE streams? ``python -m bench.load``.

Modules: :mod:`~bench.load.plan` (the sizes), :mod:`~bench.load.jobs` (seeding and the writer),
:mod:`~bench.load.streams` (the SSE clients), :mod:`~bench.load.server` (uvicorn and its
memory), :mod:`~bench.load.run` (one run, with wrk's pollers), :mod:`~bench.load.figures` and
:mod:`~bench.load.report`; :mod:`~bench.load.app` is what the server runs.

The names a test needs load on first use, so that the server's process, which imports
:mod:`bench.load.app`, pays only for what it serves.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.load.figures import LoadReport
    from bench.load.plan import PREFIX, LoadPlan
    from bench.load.report import render, save
    from bench.load.run import run_load

__all__ = ["PREFIX", "LoadPlan", "LoadReport", "render", "run_load", "save"]

_HOMES = {
    "PREFIX": "plan",
    "LoadPlan": "plan",
    "LoadReport": "figures",
    "render": "report",
    "save": "report",
    "run_load": "run",
}


def __getattr__(name: str) -> Any:
    """Import ``name`` from the module that defines it, the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)

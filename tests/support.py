"""Helpers shared by the test packages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from immortus import cancelling, registry, runtime


@contextmanager
def pristine_immortus() -> Iterator[None]:
    """Run the block in a fresh process's state; restore the import-time declarations after it.

    ``runtime.reset()`` before and after the block: default settings, caches, cancel requests,
    outboxes, heartbeat, feeds and the once-per-process warnings forgotten. The jobs and the
    queues' cancellers declared before the block are restored after it, and so are the jobs
    declared by a module first imported inside the block (the module stays imported, and will
    not declare them again).
    """
    declared = registry.registered()
    cancellers = runtime.part(cancelling.Cancellers).by_queue
    kept_cancellers = dict(cancellers)
    modules_before = set(sys.modules)
    runtime.reset()
    try:
        yield
    finally:
        imported = set(sys.modules) - modules_before
        kept = [
            job
            for job in registry.registered().values()
            if job.function is not None and job.function.__module__ in imported
        ]
        runtime.reset()
        registry.clear()
        for job in [*declared.values(), *kept]:
            registry.register(job)
        cancellers.clear()
        cancellers.update(kept_cancellers)


def modules_loaded_by(statement: str, packages: Iterable[str]) -> list[str]:
    """Run ``statement`` in a fresh interpreter; return the modules of ``packages`` it loaded."""
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {set(packages)!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def import_error_without(module: str, *packages: str) -> str:
    """Import ``module`` in a fresh interpreter where ``packages`` cannot be imported.

    Returns ``"ExceptionType: message"`` of the ``ImportError`` the import raised, or ``""``
    if it raised none: what a user without an extra installed would see.
    """
    blocked = "".join(f"sys.modules[{package!r}] = None\n" for package in packages)
    code = (
        f"import sys\n{blocked}"
        f"try:\n    import {module}\n"
        "except ImportError as exc:\n    print(f'{type(exc).__name__}: {exc}')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout.strip()


@contextmanager
def signal_handlers_kept() -> Iterator[None]:
    """Restore the SIGINT and SIGTERM handlers that an in-process worker (RQ's) replaces."""
    kept = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in kept.items():
            signal.signal(number, handler)

"""The Huey app as it ran before immortus was installed: the same tasks, no hooks.

A consumer of ``tests.queues.huey_bare.huey`` runs the tasks without reporting anything.
"""

from __future__ import annotations

from typing import Any

from immortus.queues.huey import uninstall
from tests.queues import huey_app

huey: Any = huey_app.huey
uninstall(huey)

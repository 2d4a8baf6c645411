"""The scenario actors in a worker whose immortus store raises on every call (fault injection).

``dramatiq tests.queues.dramatiq_faulty_app`` runs :mod:`tests.queues.dramatiq_app` with a store
whose every read and write raises ``RuntimeError``: the jobs must run on regardless.
"""

from __future__ import annotations

import immortus
from tests.queues.dramatiq_app import broker, fails, flaky, slow, steps
from tests.queues.dramatiq_faults import ExplodingStore

__all__ = ["broker", "fails", "flaky", "slow", "steps"]

immortus.configure(store=ExplodingStore())

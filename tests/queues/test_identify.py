"""``immortus.queues.identify`` on what is not a queue's job object, and what it imports.

Each queue's own test file checks it with that queue's real job objects.
"""

from __future__ import annotations

import importlib

import pytest

from immortus.queues import identify
from immortus.queues._kit import QueueIntegration
from tests.support import modules_loaded_by

QUEUES = ["celery", "kombu", "rq", "redis", "huey", "dramatiq", "django", "django_tasks"]


def test_what_no_queue_made_is_not_identified() -> None:
    assert identify(object()) == (None, None)
    assert identify("7f0c") == (None, None)
    assert identify({"job_id": "7f0c"}) == (None, None)


def test_identify_imports_no_queue_library() -> None:
    statement = "import immortus.queues; immortus.queues.identify(object())"
    assert modules_loaded_by(statement, QUEUES) == []


@pytest.mark.parametrize("name", ["celery", "rq", "huey", "dramatiq", "django_tasks"])
def test_every_queue_module_has_the_one_shape(name: str) -> None:
    module = importlib.import_module(f"immortus.queues.{name}")
    assert isinstance(module, QueueIntegration)
    assert {"install", "uninstall", "installed", "identify"} <= set(module.__all__)
    assert module.identify(object()) is None  # not its job object: another queue's turn

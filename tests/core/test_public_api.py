from __future__ import annotations

import inspect

import immortus
from immortus import exceptions
from tests.support import modules_loaded_by


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(immortus).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(immortus.__all__) == public | {"__version__"}
    assert len(immortus.__all__) == len(set(immortus.__all__))


def test_every_exception_is_in_the_one_tree_and_drawn_in_its_docstring() -> None:
    doc = exceptions.__doc__ or ""
    for name in exceptions.__all__:
        error = getattr(exceptions, name)
        assert issubclass(error, exceptions.ImmortusError)
        assert name in doc, f"{name} is missing from the tree in exceptions.py"
        assert getattr(immortus, name) is error
    assert issubclass(exceptions.InvalidInput, ValueError)
    assert issubclass(exceptions.MissingDependency, ImportError)


def test_importing_immortus_imports_no_driver_queue_or_framework() -> None:
    heavy = {"sqlite3", "redis", "sqlalchemy", "psycopg", "rich", "celery", "rq", "django",
             "starlette", "flask", "huey", "dramatiq"}  # fmt: skip
    assert modules_loaded_by("import immortus", heavy) == []

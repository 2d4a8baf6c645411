"""The dashboard loads no framework, and the metrics' library only when scraped."""

from __future__ import annotations

from tests.support import modules_loaded_by

FRAMEWORKS = ("starlette", "flask", "django", "prometheus_client", "uvicorn")


def test_the_core_and_the_metrics_module_load_no_framework() -> None:
    statement = "import immortus.web.dashboard, immortus.web.dashboard.metrics, immortus.cli"
    assert modules_loaded_by(statement, FRAMEWORKS) == []

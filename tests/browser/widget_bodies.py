"""A verify body for each of the eight states, as the widget tests and screenshots show them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

#: Every state a job can be in, in the order the pages show them.
STATES: Final = (
    "created",
    "started",
    "retrying",
    "finished",
    "failed",
    "cancelled",
    "lost",
    "unknown",
)
JOB_ID: Final = "7f0c2a9e-4b1d-4c6e-9a53-2f8d1e6b0c47"
JOB_CLASS: Final = "reports.build"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def bodies(now: datetime | None = None) -> list[dict[str, Any]]:
    """One verify body per state, with times around ``now`` (default: the current time)."""
    now = now or datetime.now(UTC)
    enqueued, started = now - timedelta(seconds=42), now - timedelta(seconds=40)
    base: dict[str, Any] = {
        "job_id": JOB_ID,
        "job_class": JOB_CLASS,
        "progress": None,
        "error": None,
        "attempts": 1,
        "enqueued_at": _iso(enqueued),
        "started_at": _iso(started),
        "finished_at": None,
        "certain": True,
    }

    def body(status: str, completed: bool, success: bool | None, **more: Any) -> dict[str, Any]:
        return {**base, "status": status, "completed": completed, "success": success, **more}

    def progress(current: int, message: str) -> dict[str, Any]:
        return {"current": current, "total": 100, "percent": float(current), "message": message}

    error = {"type": "reports.errors.SourceUnavailable", "message": "the ledger API timed out"}
    return [
        body("created", False, None, attempts=0, started_at=None),
        body("started", False, None, progress=progress(45, "page 45 of 100"), pages=100),
        body(
            "retrying",
            False,
            None,
            progress=progress(30, "page 30 of 100"),
            error=error,
            retry_at=_iso(now + timedelta(seconds=12)),
        ),
        body(
            "finished",
            True,
            True,
            progress=progress(100, "done"),
            attempts=2,
            finished_at=_iso(now),
            path="reports/2026-Q3.pdf",
        ),
        body(
            "failed",
            True,
            False,
            progress=progress(60, "page 60 of 100"),
            error={"type": "reports.errors.CorruptPage", "message": "page 61 is truncated"},
            attempts=3,
            finished_at=_iso(now),
        ),
        body(
            "cancelled", True, False, progress=progress(25, "page 25 of 100"), finished_at=_iso(now)
        ),
        body("lost", True, False, progress=progress(70, "page 70 of 100"), finished_at=_iso(now)),
        {**body("unknown", False, None), "attempts": 0, "enqueued_at": None, "started_at": None},
    ]

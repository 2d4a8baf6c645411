"""The bodies the widget tests and screenshots show: a job in each state, a group in four."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from immortus.groups import GroupStatus
from immortus.status import JobError, State

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: The JavaScript client the pages load from disk.
SCRIPT: Final = (
    Path(__file__).resolve().parents[2] / "src" / "immortus" / "web" / "static" / "immortus.js"
)
# One element per body, in a page's <main>: labelled, themed, shown the body (no server).
_SHOW: Final = """([tag, label, bodies, theme, cancelUrl]) => {
    for (const body of bodies) {
        const element = document.createElement(tag);
        element.id = body.status;
        element.setAttribute('label', label);
        element.setAttribute('theme', theme);
        if (cancelUrl && body.status === 'started') element.setAttribute('cancel-url', cancelUrl);
        document.querySelector('main').append(element);
        element.show(body);
    }
}"""

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


#: The states a group's card is pictured in.
GROUP_STATES: Final = ("created", "started", "finished", "failed")
GROUP_ID: Final = "import-2026-q3"


def group_bodies(now: datetime | None = None) -> list[dict[str, Any]]:
    """One group body per state of :data:`GROUP_STATES`: 1 000 members, as a store answers."""
    now = now or datetime.now(UTC)
    error = JobError(type="imports.errors.BadRow", message="row 17: the date is not a date")

    def body(jobs: dict[State, int], running: float = 0.0, failed: bool = False) -> Any:
        found = GroupStatus.of(
            GROUP_ID, jobs, running=running, first_error=error if failed else None, updated_at=now
        )
        return found.to_dict()

    return [
        body({State.CREATED: 1000}),
        body(
            {State.CREATED: 612, State.STARTED: 8, State.FINISHED: 379, State.FAILED: 1}, 3.5, True
        ),
        body({State.FINISHED: 1000}),
        body({State.FINISHED: 994, State.FAILED: 4, State.CANCELLED: 2}, failed=True),
    ]


def show_bodies(
    page: Page,
    tag: str,
    shown: list[dict[str, Any]],
    *,
    title: str,
    heading: str,
    label: str,
    theme: str,
    cancel_url: str | None = None,
) -> None:
    """A page with one ``tag`` element per body of ``shown``, each showing its body.

    Each element's id is its body's status; the ``started`` one gets ``cancel_url``.
    """
    page.set_content(
        f"<!doctype html><html lang=en><title>{title}</title><body><main><h1>{heading}</h1></main>"
    )
    page.add_script_tag(path=str(SCRIPT))
    page.evaluate(_SHOW, [tag, label, shown, theme, cancel_url])

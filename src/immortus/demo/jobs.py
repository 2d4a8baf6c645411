"""The demo's sample jobs: ordinary functions opted in to tracking with ``@immortus.track``.

Each stands for a kind of job a web application enqueues, and reports the way such a job
would: :func:`immortus.progress` as it goes, :func:`immortus.update_meta` for facts a page
shows beside the bar, and plain exceptions when it fails. ``pace`` is the seconds one step
takes, so the demo can be sped up.
"""

from __future__ import annotations

import immortus
from immortus.demo.pacing import pause

__all__ = ["CorruptImage", "build_report", "fetch_rates", "import_rows", "resize_images"]

CURRENCIES = ("EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN", "CZK", "NZD")
REPORT_STAGES = (("collect", 40), ("aggregate", 30), ("render", 50), ("publish", 20))


class CorruptImage(Exception):
    """An image cannot be decoded."""


@immortus.track(name="demo.import_rows")
def import_rows(rows: int = 120, *, pace: float) -> int:
    """Import the rows of an uploaded CSV file, one progress step per row. Succeeds."""
    for number in range(1, rows + 1):
        pause(pace)
        immortus.progress(number, rows, f"row {number} of customers.csv")
    return rows


@immortus.track(name="demo.resize_images")
def resize_images(images: int = 50, *, pace: float) -> None:
    """Resize a batch of photos. Photo 31 of 50 is corrupt, so it fails at 60 %."""
    for number in range(1, images + 1):
        name = f"photo_{number:03d}.jpg"
        if number == 31:
            raise CorruptImage(f"{name} is truncated: cannot decode it")
        pause(pace)
        immortus.progress(number, images, name)


@immortus.track(name="demo.fetch_rates")
def fetch_rates(*, pace: float) -> dict[str, float]:
    """Fetch exchange rates. The first attempt times out; a retry succeeds."""
    job = immortus.current_job()
    attempt = 1 if job is None or job.attempt is None else job.attempt
    rates: dict[str, float] = {}
    for number, currency in enumerate(CURRENCIES, 1):
        if attempt == 1 and number == 5:
            raise TimeoutError("the rates server did not answer within 5 s")
        pause(pace)
        rates[currency] = round(1 + number / 10, 2)
        immortus.progress(number, len(CURRENCIES), f"USD/{currency}")
    return rates


@immortus.track(name="demo.build_report")
def build_report(*, pace: float) -> str:
    """Build a quarterly report in four stages, telling its stage and page count as meta."""
    total = sum(steps for _, steps in REPORT_STAGES)
    done = 0
    for stage, steps in REPORT_STAGES:
        immortus.update_meta(stage=stage)
        for step in range(1, steps + 1):
            pause(pace)
            done += 1
            if stage == "render" and step % 10 == 0:
                immortus.update_meta(pages=step)
            immortus.progress(done, total, f"{stage} {step}/{steps}")
    path = "reports/2026-Q3.pdf"
    immortus.update_meta(stage="done", path=path)
    return path

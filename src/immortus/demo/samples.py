"""The four sample jobs both demos run, what each one shows, and how each should end.

Each :class:`Sample` pairs a tracked job function of :mod:`immortus.demo.jobs` with its pace, its
retries and its expected ending, so the terminal demo, the web demo and the smoke run agree on
them. The paces are at speed 1; each demo divides them by its ``--speed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from immortus.demo import jobs
from immortus.jobs import job_class_of
from immortus.status import State

__all__ = ["RETRY_DELAY", "SAMPLES", "SAMPLES_BY_SLUG", "TICK", "Sample"]

#: One step of the slowest sample at speed 1, in seconds: the terminal demo lasts about 13 s.
TICK: Final = 0.1
#: Seconds before a failed attempt is retried, at speed 1.
RETRY_DELAY: Final = 15 * TICK


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """A sample job: its function, what it shows, how it runs, and how it should end."""

    #: Its name in the web demo's URLs: ``POST /jobs/{slug}``.
    slug: str
    function: Callable[..., object]
    #: What the page's button and card call it.
    title: str
    #: What it shows, in a few words.
    shows: str
    #: Seconds per step at speed 1.
    pace: float
    #: How many times the queue retries a failed attempt.
    retries: int = 0
    #: How it ends when left alone, and after how many attempts.
    expected: State
    attempts: int = 1
    #: The percent of progress it ends at when left alone.
    ends_at: float = 100.0
    #: Whether the page offers to cancel it while it runs.
    cancellable: bool = False

    @property
    def job_class(self) -> str:
        """The job class its function is tracked under."""
        return job_class_of(self.function)


SAMPLES: Final = (
    Sample(
        slug="import-rows",
        function=jobs.import_rows,
        title="Import customers.csv",
        shows="succeeds, reporting progress row by row",
        pace=0.8 * TICK,
        expected=State.FINISHED,
    ),
    Sample(
        slug="resize-images",
        function=jobs.resize_images,
        title="Resize 50 photos",
        shows="fails at 60 %: photo 31 is corrupt",
        pace=1.5 * TICK,
        expected=State.FAILED,
        ends_at=60.0,
    ),
    Sample(
        slug="build-report",
        function=jobs.build_report,
        title="Build the quarterly report",
        shows="a long job that reports its stage; it can be cancelled",
        pace=0.9 * TICK,
        expected=State.FINISHED,
        cancellable=True,
    ),
    Sample(
        slug="fetch-rates",
        function=jobs.fetch_rates,
        title="Fetch exchange rates",
        shows="times out once, then succeeds on the retry",
        pace=2 * TICK,
        retries=1,
        expected=State.FINISHED,
        attempts=2,
    ),
)

#: The samples by their slug.
SAMPLES_BY_SLUG: Final[Mapping[str, Sample]] = MappingProxyType(
    {sample.slug: sample for sample in SAMPLES}
)

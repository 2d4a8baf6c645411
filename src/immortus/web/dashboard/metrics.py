"""The Prometheus metrics: the overview's counts, as text a Prometheus server scrapes.

Needs the ``prometheus-client`` library (``pip install "immortus[prometheus]"``), imported only
when metrics are asked for. The numbers come from the same :class:`~.counts.Counts` the overview
shows (approximate, and said so in ``immortus_counts_approximate``, when the store keeps no
counters); the outbox numbers are this process's (:func:`immortus.outbox.stats`).

====================================  =============================================================
``immortus_jobs``                     jobs by ``state``, ``queue`` and ``job_class`` (gauge)
``immortus_attempt_duration_seconds``  ended attempts' durations (histogram)
``immortus_jobs_lost_last_hour``      jobs lost in the last hour (gauge)
``immortus_jobs_cancelled``           cancelled jobs (gauge)
``immortus_store_errors_total``       failed reads of the store by this dashboard (counter)
``immortus_outbox_buffered``          events this process holds for an unreachable store (gauge)
``immortus_outbox_dropped_total``     events this process gave up (counter)
``immortus_counts_approximate``       1 when the counts cover only the most recent jobs
====================================  =============================================================
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Protocol

from immortus import outbox
from immortus.exceptions import MissingDependency
from immortus.status import State
from immortus.web.dashboard.counts import DURATION_BOUNDS, Counts

__all__ = ["Measured", "render_metrics"]


class Measured(Protocol):
    """What a scrape reads (a :class:`~.core.Dashboard`): the overview's counts, store errors."""

    @property
    def store_errors(self) -> int:
        """How many reads of the store failed."""

    def counts(self) -> Counts:
        """The overview's counts."""


def render_metrics(dashboard: Measured) -> tuple[str, bytes]:
    """The media type and body of a scrape.

    Raises:
        MissingDependency: prometheus-client is not installed.
        StoreUnavailable: the store cannot be reached.
    """
    try:
        from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415
        from prometheus_client.exposition import CONTENT_TYPE_LATEST  # noqa: PLC0415
        from prometheus_client.metrics_core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            Metric,
        )
    except ImportError as exc:
        raise MissingDependency("prometheus-client", "prometheus") from exc
    counts = dashboard.counts()

    class _Collector:
        def collect(self) -> Iterator[Metric]:
            jobs = GaugeMetricFamily(
                "immortus_jobs",
                "Jobs by state, queue and class",
                labels=["state", "queue", "job_class"],
            )
            for job_class, states in counts.by_class.items():
                queue = counts.by_class_queue[job_class]
                for state, number in states.items():
                    jobs.add_metric([state.value, queue, job_class], number)
            yield jobs
            yield _histogram(HistogramMetricFamily, counts.durations, counts.duration_sum)
            yield GaugeMetricFamily(
                "immortus_jobs_lost_last_hour", "Jobs lost in the last hour", counts.lost_last_hour
            )
            yield GaugeMetricFamily(
                "immortus_jobs_cancelled", "Cancelled jobs", counts.by_state.get(State.CANCELLED, 0)
            )
            yield CounterMetricFamily(
                "immortus_store_errors", "Failed store reads", dashboard.store_errors
            )
            stats = outbox.stats()
            yield GaugeMetricFamily(
                "immortus_outbox_buffered", "Events held by this process", stats.buffered
            )
            yield CounterMetricFamily(
                "immortus_outbox_dropped", "Events this process gave up", stats.dropped
            )
            yield GaugeMetricFamily(
                "immortus_counts_approximate",
                "1 when the counts cover only the most recent jobs",
                int(counts.approximate),
            )

    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(_Collector())
    return CONTENT_TYPE_LATEST, generate_latest(collectors)


def _histogram(family: Any, durations: tuple[int, ...], total: float) -> Any:
    """The histogram family of the per-bucket ``durations`` (made cumulative, as Prometheus has)."""
    bounds = [*(str(bound) for bound in DURATION_BOUNDS), "+Inf"]
    running = list(itertools.accumulate(durations))
    return family(
        "immortus_attempt_duration_seconds",
        "Durations of ended attempts",
        buckets=[(bound, float(count)) for bound, count in zip(bounds, running, strict=True)],
        sum_value=total,
    )

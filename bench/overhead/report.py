"""The tracking-overhead benchmark's report: the printed tables and the saved figures."""

from __future__ import annotations

import os
import platform
import statistics
import textwrap
from collections.abc import Sequence
from typing import Any, Final

from bench.common import table
from bench.overhead.figures import KINDS, NO_HISTORY, Limit, Measure, Section
from bench.overhead.queues import Options

#: Target of the queue issue: a tracked worker keeps at least this fraction of its untracked rate.
TARGET: Final = 0.90


def _number(value: float | None, form: str = ",.0f") -> str:
    return "-" if value is None else format(value, form)


def render(sections: Sequence[Section], options: Options, duration_s: float) -> str:
    """Return the report: a summary table over the queues, then each queue's figures."""
    small, large = min(options.counts), max(options.counts)
    head = [
        "queue",
        "untracked/s",
        "tracked/s",
        "ratio",
        "CPU ratio",
        f"µs/job @{small}",
        f"@{large}",
        f"CPU µs/job @{small}",
        f"@{large}",
        "slope wall / CPU",
    ]
    rows = []
    for section in sections:
        low, top = section.measures[small], section.measures[large]
        rows.append(
            [
                section.queue,
                f"{top.rate('untracked'):,.0f}",
                f"{top.rate('tracked'):,.0f}",
                f"{top.ratio():.2f}",
                _number(top.cpu_ratio(), ".2f"),
                _number(low.overhead_us()),
                _number(top.overhead_us()),
                _number(low.overhead_us("cpu")),
                _number(top.overhead_us("cpu")),
                f"{section.slope()} / {section.slope('cpu')}",
            ]
        )
    legend = (
        f"Rates and ratios at {large} jobs a batch, medians of the rounds. ratio: tracked / "
        f"untracked jobs per second of the worker (target >= {TARGET}); CPU ratio: the same per "
        "CPU second of the worker (steadier on a busy host). µs/job: what tracking adds to each "
        "job, 1/tracked - 1/untracked rate, paired within each round, at each batch size, on the "
        "wall clock and in the worker's CPU time. slope: flat when the rounds' µs/job at both "
        "sizes overlap, else how far the medians move (µs) from the smaller to the larger."
    )
    lines = [
        "tracking overhead: a real worker draining no-op jobs, untracked vs tracked "
        "(hooks + SQLite store)",
        f"{options.rounds} interleaved rounds of batches of {small} and {large} jobs; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"whole run {duration_s:.0f} s",
        "",
        *table(head, rows),
        "",
        *textwrap.wrap(legend, width=100),
    ]
    lines += ["", *_limit_lines(sections, large)]
    if options.history:
        lines += ["", *_history_lines(sections)]
    for section in sections:
        lines += ["", *_queue_lines(section)]
    return "\n".join(lines)


def verdict(limit: Limit | None) -> str:
    """Whether ``limit``'s ratio meets the target, or the target is beyond its ceiling."""
    if limit is None:
        return "-"
    if limit.ratio >= TARGET:
        return "met"
    return "out of reach" if limit.ceiling < TARGET else "missed"


def _of(limit: Limit | None, figure: str, form: str = ",.0f") -> str:
    """One figure of ``limit``, or ``-``."""
    return "-" if limit is None else format(getattr(limit, figure), form)


def _limit_lines(sections: Sequence[Section], jobs: int) -> list[str]:
    """Each queue's ratios beside their ceilings: what the bare writes alone would leave."""
    head = [
        "queue",
        "where",
        "ratio",
        "ceiling",
        "target",
        "µs untracked",
        "bare writes",
        "above bare",
    ]
    rows = []
    for section in sections:
        measure = section.measures[jobs]
        for where in ("worker", "enqueue"):
            limit, cpu = measure.limit(where), measure.limit(where, "cpu")
            if limit is None:
                continue
            rows.append(
                [
                    section.queue,
                    where,
                    f"{limit.ratio:.2f} ({_of(cpu, 'ratio', '.2f')})",
                    f"{limit.ceiling:.2f} ({_of(cpu, 'ceiling', '.2f')})",
                    verdict(limit),
                    f"{limit.untracked:,.0f} ({_of(cpu, 'untracked')})",
                    f"{limit.floor:,.0f} ({_of(cpu, 'floor')})",
                    f"{limit.above_floor:,.0f} ({_of(cpu, 'above_floor')})",
                ]
            )
    legend = (
        f"Against the limit, at {jobs} jobs a batch: wall clock (CPU time). Tracking promises a "
        "job's created record when the enqueue returns and each event durable when its hook "
        "returns: at least one store write an enqueue and two a job. bare writes: that many "
        "single-row upserts on the same SQLite file, sqlite3 straight, each in its own "
        "transaction, timed beside each batch (µs a job). ceiling: untracked / (untracked + bare "
        "writes), the best ratio keeping the promise. above bare: what immortus spends beyond "
        "them (tracked - untracked - bare writes, µs a job). target: met (ratio >= "
        f"{TARGET}), out of reach (ceiling < {TARGET}) or missed. Enqueue CPU is the "
        "benchmark's own process; worker CPU the worker's."
    )
    return ["against the limit", *table(head, rows, left=2), *textwrap.wrap(legend, width=100)]


def _history_lines(sections: Sequence[Section]) -> list[str]:
    """What the job history adds: the tracked worker with it on and off, side by side."""
    head = [
        "queue",
        "jobs",
        "no history/s",
        "history/s",
        "ratio",
        "µs/job added [range]",
        "CPU µs/job added [range]",
        "tracking µs/job (CPU)",
        "share of tracking (CPU)",
    ]
    rows = []
    for section in sections:
        for jobs, measure in sorted(section.measures.items()):
            tracking = measure.overhead_us(kind=NO_HISTORY)
            tracking_cpu = measure.overhead_us("cpu", kind=NO_HISTORY)
            share, share_cpu = measure.history_share(), measure.history_share("cpu")
            rows.append(
                [
                    section.queue,
                    str(jobs),
                    f"{measure.rate(NO_HISTORY):,.0f}",
                    f"{measure.rate('tracked'):,.0f}",
                    f"{measure.rate('tracked') / measure.rate(NO_HISTORY):.2f}",
                    _ranged(measure, "wall", base=NO_HISTORY),
                    _ranged(measure, "cpu", base=NO_HISTORY),
                    f"{_number(tracking)} ({_number(tracking_cpu)})",
                    f"{_number(share, '+.1%')} ({_number(share_cpu, '+.1%')})",
                ]
            )
    legend = (
        "The job history, side by side: the tracked worker's batches with the history on and "
        "off, interleaved in every round. ratio: history / no history jobs per second. µs/job "
        "added: 1/history - 1/no-history rate, paired within each round. share: its median over "
        "the median of tracking's own µs/job without the history (no history - untracked)."
    )
    return ["job history", *table(head, rows, left=2), *textwrap.wrap(legend, width=100)]


def _queue_lines(section: Section) -> list[str]:
    head = [
        "jobs",
        "untracked/s",
        "tracked/s",
        "spread",
        "ratio",
        "CPU ratio",
        "CPU µs/job",
        "µs/job added [range]",
        "CPU µs/job added [range]",
        "enqueue ratio",
    ]
    rows = []
    for jobs, measure in sorted(section.measures.items()):
        rows.append(
            [
                str(jobs),
                f"{measure.rate('untracked'):,.0f}",
                f"{measure.rate('tracked'):,.0f}",
                f"{measure.spread('untracked'):.0%}/{measure.spread('tracked'):.0%}",
                f"{measure.ratio():.2f}",
                _number(measure.cpu_ratio(), ".2f"),
                f"{_number(measure.cpu_us('untracked'))} -> {_number(measure.cpu_us('tracked'))}",
                _ranged(measure, "wall"),
                _ranged(measure, "cpu"),
                f"{measure.enqueue_rate('tracked') / measure.enqueue_rate('untracked'):.2f}",
            ]
        )
    trips = section.store_round_trips()
    notes = [
        "spread: (max - min) / median of the rounds' rates; enqueue ratio: tracked / untracked "
        "enqueue rate. Store round trips a tracked job: "
        + ", ".join(f"{where} {_number(n, '.2f')}" for where, n in trips.items())
        + "."
    ]
    commands = section.redis_commands()
    if commands:
        notes.append(
            "Redis commands a job, untracked -> tracked (the worker's: while it ran the batch, "
            "with the other worker's idle waits): "
            + ", ".join(
                f"{at} {commands[f'{at} untracked']:.2f} -> {commands[f'{at} tracked']:.2f}"
                for at in ("enqueue", "worker")
            )
            + "."
        )
    return [
        f"{section.queue}: {section.worker}",
        *table(head, rows, left=0),
        *(line for note in notes for line in textwrap.wrap(note, width=100)),
    ]


def _ranged(measure: Measure, clock: str, *, base: str = "untracked") -> str:
    overheads = measure.overheads_us(clock, base=base)
    if not overheads:
        return "-"
    median = statistics.median(overheads)
    return f"{median:,.0f} [{min(overheads):,.0f}, {max(overheads):,.0f}]"


def figures(sections: Sequence[Section], options: Options, duration_s: float) -> dict[str, Any]:
    """Every figure of the run, for ``bench/results/latest.json``."""
    queues: dict[str, Any] = {}
    for section in sections:
        counts: dict[str, Any] = {}
        for jobs, measure in sorted(section.measures.items()):
            cpu = measure.cpu_ratio()
            counts[str(jobs)] = {
                "untracked_jobs_per_s": round(measure.rate("untracked"), 1),
                "tracked_jobs_per_s": round(measure.rate("tracked"), 1),
                "ratio": round(measure.ratio(), 3),
                "cpu_ratio": None if cpu is None else round(cpu, 3),
                "overhead_us_per_job": _rounded(measure.overhead_us()),
                "overhead_us_per_job_rounds": [round(v, 1) for v in measure.overheads_us()],
                "cpu_overhead_us_per_job": _rounded(measure.overhead_us("cpu")),
                "cpu_overhead_us_per_job_rounds": [
                    round(v, 1) for v in measure.overheads_us("cpu")
                ],
                "cpu_us_per_job": {kind: _rounded(measure.cpu_us(kind)) for kind in KINDS},
                "untracked_rates": [round(run.rate, 1) for run in measure.runs["untracked"]],
                "tracked_rates": [round(run.rate, 1) for run in measure.runs["tracked"]],
                "enqueue_untracked_per_s": round(measure.enqueue_rate("untracked"), 1),
                "enqueue_tracked_per_s": round(measure.enqueue_rate("tracked"), 1),
                "limit": {
                    f"{where}_{clock}": _limit_figures(measure.limit(where, clock))
                    for where in ("worker", "enqueue")
                    for clock in ("wall", "cpu")
                },
            }
            if measure.runs[NO_HISTORY]:
                counts[str(jobs)]["history"] = _history_figures(measure)
        queues[section.key] = {
            "queue": section.queue,
            "worker": section.worker,
            "counts": counts,
            "overhead_slope": {"wall": section.slope(), "cpu": section.slope("cpu")},
            "store_round_trips_per_job": section.store_round_trips(),
            "redis_commands_per_job": {k: round(v, 2) for k, v in section.redis_commands().items()},
        }
    return {
        "counts": list(options.counts),
        "rounds": options.rounds,
        "target_ratio": TARGET,
        "duration_s": round(duration_s, 1),
        "queues": queues,
    }


def _history_figures(measure: Measure) -> dict[str, Any]:
    """What the job history adds, at one batch size (``--history``)."""
    share, share_cpu = measure.history_share(), measure.history_share("cpu")
    return {
        "no_history_jobs_per_s": round(measure.rate(NO_HISTORY), 1),
        "no_history_rates": [round(run.rate, 1) for run in measure.runs[NO_HISTORY]],
        "history_us_per_job_rounds": [round(v, 1) for v in measure.overheads_us(base=NO_HISTORY)],
        "history_cpu_us_per_job_rounds": [
            round(v, 1) for v in measure.overheads_us("cpu", base=NO_HISTORY)
        ],
        "tracking_us_per_job_without_history": _rounded(measure.overhead_us(kind=NO_HISTORY)),
        "history_share_of_tracking": None if share is None else round(share, 4),
        "history_cpu_share_of_tracking": None if share_cpu is None else round(share_cpu, 4),
    }


def _limit_figures(limit: Limit | None) -> dict[str, Any] | None:
    """One :class:`Limit`, µs per job and ratios, for the saved figures."""
    if limit is None:
        return None
    return {
        "untracked_us": round(limit.untracked, 1),
        "tracked_us": round(limit.tracked, 1),
        "bare_writes_us": round(limit.floor, 1),
        "above_bare_us": round(limit.above_floor, 1),
        "ratio": round(limit.ratio, 3),
        "ceiling": round(limit.ceiling, 3),
        "target": verdict(limit),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

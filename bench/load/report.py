"""The load's report: the printed table and the saved figures."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import results
from bench.load.figures import LoadReport
from bench.load.plan import (
    SAMPLE_SECONDS,
)


def render(reports: Sequence[LoadReport]) -> str:
    """Return the table of every run: polls, streams, the server's memory, the errors."""
    if not reports:
        return "load: no run"
    plan = reports[0].plan
    mib = 1 << 20
    lines = [
        f"load: one uvicorn process (immortus_routes, secret key), wrk {plan.wrk_threads} "
        f"threads x {plan.pollers} keep-alive connections (timeout {plan.wrk_timeout:g} s) "
        f"+ {plan.streams} SSE streams, {plan.duration:g} s after a {plan.warmup:g} s warm-up; "
        f"{plan.jobs} polled jobs, {plan.churn:g} progress writes/s",
        f"machine: {os.cpu_count()} CPUs, shared; figures are one run's, not medians",
        "",
        f"{'store':<8}{'requests':>10}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'SSE ok':>8}{'SSE p50':>9}{'SSE p99':>9}{'SSE err':>8}"
        f"{'RSS start':>10}{'end':>7}{'peak':>7}{'growth':>13}",
    ]
    for report in reports:
        polls, streams, memory = report.polls, report.streams, report.memory
        growth = f"{memory.growth_bytes / mib:+.1f} ({memory.growth_ratio:+.0%})"
        lines.append(
            f"{report.store:<8}{polls.requests:>10,}{polls.rate:>8,.0f}{polls.p50_ms:>8.0f}"
            f"{polls.p99_ms:>8.0f}{polls.errors:>7}"
            f"{streams.completed:>5}/{streams.streams:<3}{streams.delivery_ms(50):>7.0f}ms"
            f"{streams.delivery_ms(99):>7.0f}ms{sum(streams.errors.values()):>8}"
            f"{memory.start_bytes / mib:>8.1f}Mi{memory.end_bytes / mib:>7.1f}"
            f"{memory.peak_bytes / mib:>7.1f}{growth:>13}"
        )
    for report in reports:
        problems = {
            "poll answers": report.polls.statuses,
            "wrk socket errors": report.polls.socket_errors,
            "stream errors": report.streams.errors,
            "writer errors": report.writer_errors,
            "warm-up errors": report.warmup_errors,
            "server log lines": len(report.server_log),
        }
        lines.append(f"{report.store}: " + "; ".join(f"{k} {v}" for k, v in problems.items()))
        readings = " ".join(f"{sample / mib:.1f}" for sample in report.memory.samples)
        lines.append(f"  server RSS under load, every {SAMPLE_SECONDS:g} s (MiB): {readings}")
        lines += [f"  writer: {line}" for line in report.writer_log[:10]]
        lines += [f"  server: {line}" for line in report.server_log[:10]]
    return "\n".join(lines)


def save(reports: Sequence[LoadReport]) -> Path:
    """Add the runs to the ``load`` section of the results file, beside runs of other stores."""
    runs: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(results.LATEST.read_text(encoding="utf-8"))["load"]["runs"]
        runs.update(saved if isinstance(saved, dict) else {})
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    runs.update({report.store: {"measured_at": stamp, **report.to_dict()} for report in reports})
    return results.save("load", {"runs": runs})

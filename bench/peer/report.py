"""The peer benchmark's report: the printed table and the saved figures."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import results
from bench.peer.deployment import SIDES, Deployment
from bench.peer.measure import (
    GROUPS,
    READS,
    TARGET,
    TARGET_GROUP,
    Figures,
    Load,
)
from bench.peer.seed import EXPECTED, KINDS


def render(
    figures: Figures, bodies: Mapping[str, Any], *, jobs: int, deployment: Deployment, load: Load
) -> str:
    """Return the report: each side's medians on each group, the ratios, and two bodies."""
    kinds = {
        kind: sum(1 for n in range(jobs) if KINDS[n % len(KINDS)] == kind) for kind in EXPECTED
    }
    lines = [
        f"against the peer: immortus {version('immortus')} vs celery-progress "
        f"{version('celery-progress')}; Django {version('django')}, Celery {version('celery')}",
        f"server: {deployment.describe()}; one redis-server: broker and result backend",
        f"load: wrk 1 thread x {load.connections} connections, {load.rounds} rounds of "
        f"{load.seconds} s a load, interleaved; a random task a request, one sequence for both",
        f"tasks: {jobs} ({kinds['in_progress']} in progress, {kinds['finishes']} finished, "
        f"{kinds['fails']} failed), run by a real Celery worker",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; server, redis-server and wrk share it",
        "",
        f"{'tasks asked':<13}{'route':<17}{'req/s':>8}{'spread':>8}{'p99 ms':>8}{'req/CPU s':>11}",
    ]
    for group in GROUPS:
        lines.extend(_row(figures, group, side) for side in SIDES)
        lines.append(
            f"{'':<13}{'ours / theirs':<17}{figures.ratio(group, 'rate'):>7.2f}x{'':>8}"
            f"{figures.ratio(group, 'p99_ms'):>7.2f}x{figures.ratio(group, 'cpu_rate'):>10.2f}x"
        )
    ratio = figures.ratio(TARGET_GROUP, "rate")
    verdict = "PASS" if ratio >= TARGET else "MISS"
    lines += [
        "",
        f"ours / theirs on all tasks, req/s: {figures.ratio('all', 'rate'):.2f}x",
        f"ours / theirs on tasks {TARGET_GROUP}, req/s: {ratio:.2f}x "
        f"(target >= {TARGET}: {verdict})",
        *(f"per request, {side}: {READS[side]}" for side in SIDES),
        "",
        "the body of one in-progress task:",
    ]
    for side in SIDES:
        encoded = json.dumps(bodies[side], separators=(",", ":"))
        lines.append(f"  {side} ({len(encoded)} bytes): {encoded}")
    return "\n".join(lines)


def _row(figures: Figures, group: str, side: str) -> str:
    return (
        f"{group if side == SIDES[0] else '':<13}{side:<17}"
        f"{figures.median(group, side, 'rate'):>8,.0f}{figures.spread(group, side):>8.0%}"
        f"{figures.median(group, side, 'p99_ms'):>8.1f}"
        f"{figures.median(group, side, 'cpu_rate'):>11,.0f}"
    )


def save(figures: Figures, bodies: Mapping[str, Any], **conditions: Any) -> Path:
    """Save every figure, the medians and the ratios in the results file."""
    return results.save(
        "peer_celery_progress",
        {
            **conditions,
            "target": TARGET,
            "per_request": READS,
            "groups": figures.as_json(),
            "bodies": bodies,
        },
    )

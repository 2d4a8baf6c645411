"""The throughput chart: inline SVG bars, finished above failed, no script and no library."""

from __future__ import annotations

from html import escape
from typing import Final

from immortus.web.dashboard.counts import BUCKET_SECONDS, Bucket

__all__ = ["throughput_svg"]

_WIDTH: Final = 360
_HEIGHT: Final = 120


def throughput_svg(buckets: tuple[Bucket, ...]) -> str:
    """An SVG bar chart of ``buckets``, with a text alternative for screen readers."""
    top = max([bucket.finished + bucket.failed for bucket in buckets] + [1])
    step = _WIDTH / max(len(buckets), 1)
    finished = sum(bucket.finished for bucket in buckets)
    failed = sum(bucket.failed for bucket in buckets)
    minutes = len(buckets) * BUCKET_SECONDS // 60
    label = f"Jobs ended in the last {minutes} minutes: {finished} finished, {failed} failed"
    bars: list[str] = []
    for index, bucket in enumerate(buckets):
        x = index * step + 2
        width = step - 4
        ok = bucket.finished / top * (_HEIGHT - 10)
        bad = bucket.failed / top * (_HEIGHT - 10)
        when = bucket.start.strftime("%H:%M")
        bars.append(
            f"<g><title>{escape(when)}: {bucket.finished} finished, {bucket.failed} failed</title>"
            f'<rect class="bar-ok" x="{x:.1f}" y="{_HEIGHT - ok:.1f}" width="{width:.1f}" '
            f'height="{ok:.1f}"/>'
            f'<rect class="bar-failed" x="{x:.1f}" y="{_HEIGHT - ok - bad:.1f}" '
            f'width="{width:.1f}" height="{bad:.1f}"/></g>'
        )
    return (
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">{"".join(bars)}</svg>'
    )

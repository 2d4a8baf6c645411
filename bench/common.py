"""What the benchmarks share.

Every benchmark: its error (:class:`BenchError`), its progress log on stderr (:func:`log`), its
two modes on the command line (:func:`add_modes`: ``--quick``, the default of ``make bench``,
and ``--full``), and its aligned tables (:func:`table`). The servers and workers it starts come
from :mod:`devservices`.
"""

from __future__ import annotations

import argparse
import sys
import time

#: When the run started: the log and the report's duration count from it.
STARTED = time.perf_counter()


class BenchError(Exception):
    """A run went wrong, so its figures would be void.

    A store read back something other than what was seeded, a worker did not run every job...
    """


def log(message: str) -> None:
    """Print ``message`` to stderr, after the seconds since the run started."""
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def add_modes(parser: argparse.ArgumentParser, *, quick: str, full: str) -> None:
    """Add ``--quick`` (the default) and ``--full`` to ``parser``; ``args.full`` says which.

    ``quick`` and ``full`` say what each measures (their help texts). ``make bench`` runs every
    benchmark in quick mode, and passes ``--full`` when ``BENCH_FULL=1``.
    """
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", dest="full", action="store_false", help=f"{quick} (default)")
    modes.add_argument("--full", dest="full", action="store_true", help=full)
    parser.set_defaults(full=False)


def table(head: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Align ``rows`` under ``head`` and a rule: the first ``left`` columns to the left."""
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    out = [line(head)]
    out.append("-" * len(out[0]))
    out += [line(row) for row in rows]
    return out

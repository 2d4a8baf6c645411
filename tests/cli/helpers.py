"""What the tests of the ``immortus`` command share: jobs in known states, and a runner."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pytest

import immortus
from immortus import lifecycle
from immortus.cli import main
from immortus.status import Progress

JOB_CLASS: Final = "reports.build"
#: The ``src`` folder, for the ``PYTHONPATH`` of a subprocess.
SRC: Final = str(Path(immortus.__file__).resolve().parents[1])
#: Seconds a subprocess gets for each expected outcome: generous, never asserted.
WAIT: Final = 60.0


def started(job_id: str) -> None:
    lifecycle.job_enqueued(job_id, JOB_CLASS)
    lifecycle.job_started(job_id, JOB_CLASS, attempt=1)
    lifecycle.job_progress(job_id, Progress(current=37, total=100, message="row 37"), JOB_CLASS)


def finished(job_id: str) -> None:
    lifecycle.job_enqueued(job_id, JOB_CLASS)
    with immortus.running(job_id, JOB_CLASS, attempt=1):
        immortus.progress(10, 10, "all rows")


def failed(job_id: str, message: str = "boom") -> None:
    def attempt() -> None:
        with immortus.running(job_id, JOB_CLASS, attempt=1):
            immortus.progress(6, 10)
            raise ValueError(message)

    lifecycle.job_enqueued(job_id, JOB_CLASS)
    with pytest.raises(ValueError, match=re.escape(message)):
        attempt()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``immortus *argv`` in this process; return its exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err

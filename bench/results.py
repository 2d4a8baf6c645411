"""The one results file every benchmark adds its figures to: ``bench/results/latest.json``.

Each benchmark calls :func:`save` once at the end of a run with its own section; sections of
other benchmarks already in the file are kept, so ``make bench`` leaves one file holding the
figures of every benchmark of the run, each stamped with when and on what machine it ran.
The file is written atomically (a temporary file renamed over it), so an interrupted run never
leaves half a file. ``bench/results/`` is git-ignored: figures are measured, not committed;
``docs/benchmarks.md`` carries the ones worth keeping.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = ["LATEST", "machine", "save"]

#: Where :func:`save` writes.
LATEST: Final = Path(__file__).resolve().parent / "results" / "latest.json"


def machine() -> dict[str, Any]:
    """Describe the machine a figure came from: CPU count, model, memory, Python, OS."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            names = (line.split(":", 1)[1] for line in cpuinfo if line.startswith("model name"))
            model = next(names, "").strip()
    except OSError:
        pass
    memory_mib = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory_mib = pages * page_size // (1 << 20)
    except (ValueError, OSError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor() or platform.machine(),
        "memory_mib": memory_mib,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def save(name: str, figures: Mapping[str, Any], *, path: Path = LATEST) -> Path:
    """Put ``figures`` under ``name`` in the results file, keeping every other section.

    ``figures`` must be JSON-serialisable (dicts, lists, numbers, strings). The section also
    gets ``measured_at`` (UTC) and ``machine`` (:func:`machine`). Returns the path written.

    Raises:
        TypeError: ``figures`` holds something JSON cannot encode (nothing is written).
    """
    section = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **figures,
    }
    encoded_section = json.dumps(section)  # fail before touching the file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(current, dict):
            current = {}
    except (OSError, ValueError):
        current = {}
    current[name] = json.loads(encoded_section)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".latest-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(current, file, indent=2, sort_keys=True)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path

"""The loads of the verify benchmark: wrk Lua scripts, and one wrk run's rate.

Every load rotates over the seeded job ids, so no answer is served twice in a row, and every
request carries its job's token (``?token=...``, or ``token`` in a batch item): ``GET``
loads ask for one job a request (the bare route and verify), batch loads ``POST`` batches of
1, 10 or 100 jobs to ``/immortus/verify``. ``verify`` rotates over jobs few enough for immortus
to keep each one's decoded status and encoded answer (a job polled while nothing happens to
it); ``verify_cold`` over more jobs than it keeps, so every request decodes and encodes its job
anew (a job that changed since it was last asked about).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.common import BenchError
from bench.verify.common import JOB_CLASS, KEPT_PREFIX
from bench.verify.servers import Server

__all__ = ["BATCH_SIZES", "Load", "Measured", "batch_body", "job_path", "loads", "run_wrk"]

#: The batch sizes measured: jobs per ``POST /immortus/verify``.
BATCH_SIZES: Final = (1, 10, 100)


@dataclass(frozen=True, slots=True)
class Load:
    """One wrk load: its name, its Lua script, and how many jobs one request answers."""

    name: str
    script: str
    jobs_per_request: int = 1


@dataclass(frozen=True, slots=True)
class Measured:
    """One wrk run: jobs answered per second, and the server's CPU time per job (µs)."""

    jobs_per_s: float
    cpu_us_per_job: float


def _lua_list(values: Sequence[str]) -> str:
    return "{" + ",".join(json.dumps(value) for value in values) + "}"


def job_path(prefix: str, job_id: str, tokens: Mapping[str, str]) -> str:
    """``{prefix}{job_id}/{JOB_CLASS}?token=...``: a job's path, with its token."""
    return f"{prefix}{job_id}/{JOB_CLASS}?token={tokens[job_id]}"


def rotating_get(prefix: str, job_ids: Sequence[str], tokens: Mapping[str, str]) -> str:
    """Return a wrk script sending ``GET`` of each job's :func:`job_path` in turn."""
    paths = [job_path(prefix, job_id, tokens) for job_id in job_ids]
    return (
        f"local paths = {_lua_list(paths)}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n"
        "  return wrk.format('GET', paths[i])\n"
        "end\n"
    )


def batch_body(job_ids: Sequence[str], tokens: Mapping[str, str]) -> str:
    """The batch verify body asking about ``job_ids`` (with their job class and token)."""
    return json.dumps(
        {
            "jobs": [
                {"job_id": job_id, "job_class": JOB_CLASS, "token": tokens[job_id]}
                for job_id in job_ids
            ]
        }
    )


def rotating_batches(job_ids: Sequence[str], tokens: Mapping[str, str], size: int) -> str:
    """Return a wrk script POSTing batches of ``size`` jobs, rotating over ``job_ids``."""
    bodies = [
        batch_body(job_ids[start : start + size], tokens) for start in range(0, len(job_ids), size)
    ]
    return (
        f"local bodies = {_lua_list(bodies)}\nlocal i = 0\n"
        "local headers = {['Content-Type'] = 'application/json'}\n"
        "request = function()\n  i = i % #bodies + 1\n"
        "  return wrk.format('POST', '/immortus/verify', headers, bodies[i])\n"
        "end\n"
    )


def loads(
    job_ids: Sequence[str], cold_ids: Sequence[str], tokens: Mapping[str, str], *, kept: bool
) -> list[Load]:
    """The loads, in the order each round runs them: bare, verify, verify_cold, the batches.

    Every request carries its job's token; the bare route is asked with the same query string.
    With ``kept`` (an app that mounts them), ``verify_kept`` too: verify under
    :data:`~bench.verify.common.KEPT_PREFIX`, answered from the statuses read lately.
    """
    found = [
        Load("bare", rotating_get("/bare/", job_ids, tokens)),
        Load("verify", rotating_get("/immortus/verify/", job_ids, tokens)),
        Load("verify_cold", rotating_get("/immortus/verify/", cold_ids, tokens)),
    ]
    if kept:
        found.append(Load("verify_kept", rotating_get(f"{KEPT_PREFIX}/verify/", job_ids, tokens)))
    found += [
        Load(f"batch{size}", rotating_batches(job_ids, tokens, size), jobs_per_request=size)
        for size in BATCH_SIZES
    ]
    return found


_RATE: Final = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_REQUESTS: Final = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_ERRORS: Final = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)")


def run_wrk(
    server: Server, load: Load, folder: Path, *, seconds: float, connections: int
) -> Measured:
    """Run ``wrk`` (one thread) once against ``server``; return the rate and CPU per job.

    Raises:
        BenchError: wrk failed, or some answers were errors (the figure would be void).
    """
    script = folder / f"{load.name}.lua"
    if not script.exists():
        script.write_text(load.script)
    command = [
        "wrk", "--threads", "1", "--connections", str(connections),
        "--duration", f"{seconds:g}s", "--script", str(script), server.url,
    ]  # fmt: skip
    cpu_before = server.cpu_seconds()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = server.cpu_seconds() - cpu_before
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    errors = _ERRORS.search(result.stdout)
    if errors:
        raise BenchError(f"{server.url} {load.name}: wrk saw errors: {errors.group(0)}")
    rate, requests = _RATE.search(result.stdout), _REQUESTS.search(result.stdout)
    if rate is None or requests is None or int(requests.group(1)) == 0:
        raise BenchError(f"cannot read wrk's output:\n{result.stdout}")
    jobs = int(requests.group(1)) * load.jobs_per_request
    return Measured(float(rate.group(1)) * load.jobs_per_request, cpu / jobs * 1e6)

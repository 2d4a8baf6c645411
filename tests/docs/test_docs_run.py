"""Every Python block in README.md and docs/ runs as written (or is a declared fragment).

The blocks of one file run in order in one fresh interpreter whose working directory is an
empty temporary folder: the project installed, the default SQLite store in that folder. A
block that names the usual local Redis (``localhost:6379``, in any URL or setting) talks to
the suite's private redis-server instead. A block whose first line is a file name comment
(``# reports.py``) is that module: it is written to the folder and imported under its name,
and its names are then in scope for the blocks after it. Fragments are compiled, so at least
their syntax is checked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.blocks import Block, doc_files, python_blocks
from tests.services import RedisServer

_FILES = [path for path in doc_files() if python_blocks(path)]
_LOCAL_REDIS = ("localhost:6379", "127.0.0.1:6379")
_MODULE_FILE = re.compile(r"# (?P<module>[a-z_][a-z0-9_]*)\.py\n")


def _program(blocks: list[Block], redis_address: str | None) -> str:
    """One script running ``blocks`` in order, each announced so a failure names its line."""
    parts = ["import sys as _docs_sys\n"]
    for block in blocks:
        code = block.code
        if redis_address is not None:
            for local in _LOCAL_REDIS:
                code = code.replace(local, redis_address)
        parts.append(f"print('--- block {block.where}', file=_docs_sys.stderr, flush=True)\n")
        module = _MODULE_FILE.match(code)
        if module is None:
            parts.append(f"exec(compile({code!r}, {block.where!r}, 'exec'))\n")
            continue
        name = module["module"]
        parts.append(
            f"open({name + '.py'!r}, 'w').write({code!r})\n"
            f"_docs_sys.path.insert(0, '')\n"
            f"import {name}\n"
            f"globals().update((k, v) for k, v in vars({name}).items() if k[:2] != '__')\n"
        )
    return "".join(parts)


def _needs_redis(blocks: list[Block]) -> bool:
    return any(local in block.code for block in blocks for local in _LOCAL_REDIS)


@pytest.mark.parametrize("path", _FILES, ids=lambda path: path.name)
def test_fragments_compile(path: Path) -> None:
    for block in python_blocks(path):
        if block.fragment:
            compile(block.code, block.where, "exec")


@pytest.mark.parametrize("path", _FILES, ids=lambda path: str(path.relative_to(_FILES[0].parent)))
def test_blocks_run_as_written(path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    runnable = [block for block in python_blocks(path) if not block.fragment]
    if not runnable:
        return
    redis_address: str | None = None
    if _needs_redis(runnable):
        server: RedisServer = request.getfixturevalue("redis_server")
        server.ensure_running()
        server.flushdb()
        redis_address = f"127.0.0.1:{server.port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IMMORTUS_", "DJANGO_SETTINGS_MODULE"))
    }
    result = subprocess.run(
        [sys.executable, "-c", _program(runnable, redis_address)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, (
        f"a Python block of {path.name} failed (the last '--- block' line names it; mark a "
        f"block that cannot run alone with <!-- docs: fragment -->):\n{result.stderr[-4000:]}"
    )

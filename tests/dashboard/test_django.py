"""The Django mount: staff or a permission, a login redirect, Django's CSRF (see django_check)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_django_mount_fails_closed_and_uses_djangos_csrf() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.dashboard.django_check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"

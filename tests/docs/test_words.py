"""The docs and the code speak to users: no reference to documents a reader does not have."""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs.blocks import ROOT

#: Names of the project's internal brief and its source page, which users never see.
_INTERNAL = re.compile(r"(?i:\bthe seed\b|\bseed's\b)|\bDESIGN\b|§")
_SUFFIXES = {".py", ".md", ".js", ".mjs", ".ts", ".rb", ".html", ".css"}


def _shipped_text() -> list[Path]:
    folders = [ROOT / "src", ROOT / "docs", ROOT / "tests", ROOT / "bench", ROOT / "devservices"]
    files = [ROOT / "README.md"]
    for folder in folders:
        files += [path for path in folder.rglob("*") if path.suffix in _SUFFIXES]
    return [path for path in files if path != Path(__file__)]


def test_no_file_cites_a_document_users_do_not_have() -> None:
    cited = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _shipped_text()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _INTERNAL.search(line)
    ]
    assert cited == [], "say what you mean instead:\n" + "\n".join(cited)

"""Find the code blocks of README.md and docs/: what the docs test runs.

A fenced ```python block runs. The blocks of one file run in order in one fresh interpreter, as
a reader follows a page: a later block may use what an earlier one defined. A block that cannot
run on its own (it needs a running worker, a Django project, a live server) carries the line
``<!-- docs: fragment -->`` directly above its fence; it is only compiled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
FRAGMENT: Final = "<!-- docs: fragment -->"
_FENCE: Final = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<info>[^\n`]*)$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # of the first line of code, 1-based
    language: str
    code: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of ``path``, in order, with its indentation removed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = opening["info"].strip().split(" ")[0].lower()
        previous = next((text.strip() for text in reversed(lines[:index]) if text.strip()), "")
        start = index + 1
        end = start
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = [
            text[len(indent) :] if text.startswith(indent) else text for text in lines[start:end]
        ]
        found.append(Block(path, start + 1, language, "\n".join(body) + "\n", previous == FRAGMENT))
        index = end + 1
    return found


def python_blocks(path: Path) -> list[Block]:
    """The ``python`` blocks of ``path``."""
    return [block for block in blocks_of(path) if block.language in {"python", "py"}]

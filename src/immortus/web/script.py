"""Where the JavaScript client lives, and how every adapter serves it under its prefix.

``{prefix}/immortus.js`` is the client as a classic script (it defines ``window.Immortus``);
``{prefix}/immortus.mjs`` is the same client as an ES module (it imports ``immortus.js`` and
re-exports it). A file is looked up at each request (through :func:`script_path`), so an adapter
serves it as soon as it is installed and answers the JSON 404 of
:func:`~immortus.web.responses.not_found` until then.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

__all__ = [
    "SCRIPTS",
    "SCRIPT_HEADERS",
    "SCRIPT_MEDIA_TYPE",
    "STATIC_DIR",
    "script_missing",
    "script_path",
]

#: The directory shipped with immortus: ``immortus.js``, ``immortus.mjs`` and ``immortus.d.ts``.
STATIC_DIR: Final = Path(__file__).with_name("static")
#: The files served, by route name: the classic script and the ES module.
SCRIPTS: Final[Mapping[str, str]] = MappingProxyType(
    {"script": "immortus.js", "module": "immortus.mjs"}
)
#: The media type the client is served with (what browsers expect of a module script).
SCRIPT_MEDIA_TYPE: Final = "application/javascript"
#: The client may be cached for an hour, then revalidated by its ETag; never sniffed.
SCRIPT_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
)


def script_path(static_dir: Path = STATIC_DIR, name: str = "immortus.js") -> Path | None:
    """Return the path of the file ``name`` in ``static_dir``, or ``None`` if it is not there."""
    path = static_dir / name
    return path if path.is_file() else None


def script_missing(name: str) -> str:
    """Return the message of the 404 answered while the file ``name`` is not installed."""
    return f"{name} is not installed on this server"

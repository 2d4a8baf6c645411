"""Where the JavaScript client lives, and how every adapter serves it at ``{prefix}/immortus.js``.

The file is looked up at each request (through :func:`script_path`), so an adapter serves it as
soon as it is installed and answers the JSON 404 of :func:`~immortus.web.responses.not_found`
until then.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

__all__ = ["SCRIPT_HEADERS", "SCRIPT_MEDIA_TYPE", "STATIC_DIR", "script_path"]

#: The directory shipped with immortus that holds ``immortus.js`` and ``immortus.d.ts``.
STATIC_DIR: Final = Path(__file__).with_name("static")
#: The media type the client is served with (what browsers expect of a module script).
SCRIPT_MEDIA_TYPE: Final = "application/javascript"
#: The client may be cached for an hour, then revalidated by its ETag; never sniffed.
SCRIPT_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
)


def script_path(static_dir: Path = STATIC_DIR) -> Path | None:
    """Return the path of ``immortus.js`` in ``static_dir``, or ``None`` if it is not there."""
    path = static_dir / "immortus.js"
    return path if path.is_file() else None

"""Signed double-submit tokens: the dashboard's actions refused without the page's own token.

The page sets a cookie holding a random nonce and its HMAC, and puts the same value in each
form. An action is accepted only when the form's value equals the cookie's and the signature is
the dashboard's: another site can neither read the cookie nor forge a signed value. (Django
mounts use Django's own CSRF protection instead.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Final

__all__ = ["COOKIE", "FIELD", "CsrfTokens"]

#: The cookie and the form field that carry the token.
COOKIE: Final = "immortus_dashboard_csrf"
FIELD: Final = "csrf"


class CsrfTokens:
    """Makes and checks tokens signed with ``key``, read at each use (a callable may change it).

    ``None`` (or a callable answering ``None``): a random key of this process. With several
    processes behind one address, give them the same key (the dashboard uses the app's
    ``secret_key``).
    """

    def __init__(self, key: bytes | Callable[[], bytes | None] | None = None) -> None:
        self._key = key
        self._random = secrets.token_bytes(32)

    def _sign(self, nonce: str) -> str:
        key = self._key() if callable(self._key) else self._key
        signing = b"immortus dashboard csrf\0" + (key or self._random)
        return hmac.new(signing, nonce.encode("ascii"), hashlib.sha256).hexdigest()

    def make(self) -> str:
        """A new token: ``nonce.signature``."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, token: str | None) -> bool:
        """Whether ``token`` is one this object signed."""
        if not token or token.count(".") != 1 or not token.isascii():
            return False
        nonce, signature = token.split(".")
        return hmac.compare_digest(signature, self._sign(nonce))

    def accepts(self, cookie: str | None, submitted: str | None) -> bool:
        """Whether an action may run: the form's token is the cookie's, and it is signed."""
        if not cookie or not submitted or not self.valid(cookie):
            return False
        return hmac.compare_digest(cookie.encode("ascii"), submitted.encode("ascii", "replace"))

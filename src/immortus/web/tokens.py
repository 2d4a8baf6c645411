"""Signed job tokens: proof that the page asking about a job is the page that created it.

``render_job`` hands the browser a token with each job; with a secret key configured, the verify
endpoints answer only requests that carry it. A token is

    v1.<expiry>.<mac>

``expiry`` is the Unix time (whole seconds) after which it is refused, and ``mac`` the unpadded
URL-safe base64 HMAC-SHA256 of the job id, the job class (or its absence), the expiry and, when
the app binds tokens to a user, the *subject* (a user id or session key the app supplies). They
are length-prefixed in the signed message, so no two (job id, job class, expiry, subject) sign
the same bytes: a token opens one job under one job class (or under none), for one subject (or
for none), until it expires, never another. A *group* token (:meth:`JobTokens.sign_group`)
signs the group id with its own marker where a job token has its job class's, so a group token
never opens the job of the same id, nor a job token the group. The subject is not in the
token: the app supplies it again, from the request, when the token is checked. A message
without a subject is the message of tokens signed before subjects existed, so those stay
valid. The HMAC key is derived from the secret for this purpose alone, so a secret shared with
the web framework (Django's ``SECRET_KEY``) signs nothing it signs elsewhere.

A token has one spelling: only the exact text :meth:`JobTokens.sign` returned is accepted (an
expiry with a leading zero, a sign or a space, or padded base64, is another text, refused). A
check always computes the HMAC and compares in constant time, whether the token is missing,
malformed, expired or forged, so no refusal answers sooner than another.

A page polls one job with one token again and again, so each :class:`JobTokens` remembers the
last :data:`MAX_ACCEPTED` tokens it accepted, keyed by everything the MAC signs (token, job id,
job class, subject): checking one of those again costs a dictionary lookup and the expiry
test, which is made anew at every check, so a remembered token is refused the moment it
expires, exactly as a fresh one. Only acceptances are remembered; every refusal computes the
HMAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable
from typing import Final

from immortus.exceptions import ConfigurationError, InvalidInput
from immortus.validation import check_group_id, check_job_class, check_job_id

__all__ = ["MAX_ACCEPTED", "MAX_TOKEN_LENGTH", "JobTokens", "plain_token"]

#: Longest text :meth:`JobTokens.check` looks at; longer is refused before any work.
MAX_TOKEN_LENGTH: Final = 200
#: Most accepted tokens a :class:`JobTokens` remembers; past it, it forgets them all at once.
MAX_ACCEPTED: Final = 4096
#: Seconds a token's expiry may lie beyond ``now + max_age`` (clocks of two servers differ).
#: A later expiry is refused, so lowering ``token_max_age`` shortens tokens already out.
CLOCK_SKEW: Final = 60

_VERSION: Final = "v1"
_PURPOSE: Final = b"immortus.web.tokens.v1"
_MAC_LENGTH: Final = 43  # unpadded base64 of 32 bytes
_MAX_EXPIRY_DIGITS: Final = 12
#: A token as :meth:`JobTokens.sign` writes it; ``fullmatch`` only (``$`` would allow ``\n``).
_CANONICAL: Final = re.compile(
    rf"{_VERSION}\.([1-9][0-9]{{0,{_MAX_EXPIRY_DIGITS - 1}}})\.[A-Za-z0-9_-]{{{_MAC_LENGTH}}}",
    re.ASCII,
)
#: A query string that is the token alone, in characters that need no unescaping (RFC 3986's
#: unreserved ones, every character of a token): the JavaScript client's.
_PLAIN_TOKEN: Final = re.compile(r"token=([A-Za-z0-9._~-]*)", re.ASCII)
#: Marks the subject's field, after the expiry's; no subject adds nothing.
_SUBJECT: Final = b"\1"
#: Marks a group's token where a job's has ``\0`` (no job class) or ``\1`` and its class.
_GROUP: Final = b"\2"


def _field(value: str, errors: str = "strict") -> bytes:
    data = value.encode("utf-8", errors)
    return len(data).to_bytes(4, "big") + data


def _expiry_of(token: object) -> int | None:
    """Return the expiry of a token of the canonical form ``v1.<expiry>.<mac>``, else ``None``.

    Canonical: ASCII, the version, an expiry in plain digits without a leading zero, and 43
    characters of unpadded URL-safe base64 (whether they are *the* MAC is :meth:`check`'s job).
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    found = _CANONICAL.fullmatch(token)
    return None if found is None else int(found.group(1))


def plain_token(query: str) -> str | None:
    """Return the token of a query string that is ``token=...`` alone, needing no unescaping.

    That is the JavaScript client's query string: the adapters read it with this one match,
    and parse any other query string (``None`` here) with their framework, which costs more
    than checking the token.
    """
    found = _PLAIN_TOKEN.fullmatch(query)
    return None if found is None else found.group(1)


#: What a check is remembered under: token, job or group id, job class, subject, is a group.
_MemoKey = tuple[str, str, str | None, str | None, bool]


def _memo_key(
    token: object, name: object, job_class: object, subject: object, group: bool
) -> _MemoKey | None:
    """The key a check is remembered under: every part exactly text (or ``None``), else none."""
    if type(token) is not str or type(name) is not str:
        return None
    if job_class is not None and type(job_class) is not str:
        return None
    if subject is not None and type(subject) is not str:
        return None
    return (token, name, job_class, subject, group)


def _encode_mac(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class JobTokens:
    """Signs and checks job tokens with ``secret``; a token lives ``max_age`` seconds.

    ``clock`` returns the current Unix time (inject one in tests).

    Raises:
        ConfigurationError: ``secret`` is empty or not text/bytes, or ``max_age`` is not a
            positive number of seconds.
    """

    def __init__(
        self,
        secret: str | bytes,
        *,
        max_age: float = 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        secret_value: object = secret  # callers without type checks pass anything
        if not isinstance(secret_value, str | bytes) or not secret_value:
            raise ConfigurationError("a token secret must be a non-empty string or bytes")
        max_age_value: object = max_age
        if isinstance(max_age_value, bool) or not isinstance(max_age_value, int | float):
            raise ConfigurationError("token max_age must be a number of seconds")
        if not (math.isfinite(max_age) and max_age > 0):
            raise ConfigurationError(f"token max_age must be > 0, not {max_age!r}")
        raw = secret.encode("utf-8") if isinstance(secret, str) else secret
        self._key = hmac.new(raw, _PURPOSE, hashlib.sha256).digest()
        self.max_age = float(max_age)
        self._clock = clock
        #: :data:`_MemoKey` -> expiry, of tokens accepted so far.
        self._accepted: dict[_MemoKey, int] = {}

    def __repr__(self) -> str:
        return f"JobTokens(max_age={self.max_age!r})"  # never the key

    def sign(self, job_id: str, job_class: str | None = None, subject: str | None = None) -> str:
        """Return a token that opens ``job_id`` (under ``job_class``) for ``max_age`` seconds.

        With a ``subject`` (any text: a user id, a session key), the token opens the job only
        when :meth:`check` is given the same subject; without one, only when it is given none.

        Raises:
            InvalidJobId, InvalidJobClass: a name is malformed.
            InvalidInput: ``subject`` is neither text nor ``None``.
        """
        check_job_id(job_id)
        if job_class is not None:
            check_job_class(job_class)
        return self._sign(job_id, job_class, subject, group=False)

    def sign_group(self, group_id: str, subject: str | None = None) -> str:
        """Return a token that opens the group ``group_id`` (never a job) for ``max_age`` s.

        ``subject`` as in :meth:`sign`.

        Raises:
            InvalidInput: ``group_id`` is malformed (a group id follows a job id's rules).
            InvalidInput: ``subject`` is neither text nor ``None``.
        """
        check_group_id(group_id)
        return self._sign(group_id, None, subject, group=True)

    def _sign(self, name: str, job_class: str | None, subject: str | None, *, group: bool) -> str:
        subject_value: object = subject  # callers without type checks pass anything
        if subject_value is not None and not isinstance(subject_value, str):
            raise InvalidInput(
                f"a token subject must be a string or None, not {type(subject_value).__name__}"
            )
        expiry = math.ceil(self._clock() + self.max_age)
        return f"{_VERSION}.{expiry}.{self._mac(name, job_class, expiry, subject, group)}"

    def check(
        self,
        token: object,
        job_id: str,
        job_class: str | None = None,
        subject: str | None = None,
    ) -> bool:
        """Tell whether ``token`` opens ``job_id`` under ``job_class`` for ``subject`` now.

        Only the exact text :meth:`sign` returned is accepted: no leading zero, sign or space in
        the expiry, no other spelling of the MAC. ``False`` for a subject other than the one
        signed (``None`` included). The HMAC is computed whatever the token (missing, malformed
        or expired), so a refusal takes as long as any other. A token accepted before is found
        among the remembered ones, and only its expiry is tested again. Never raises.
        """
        return self._check(token, job_id, job_class, subject, group=False)

    def check_group(self, token: object, group_id: str, subject: str | None = None) -> bool:
        """Tell whether ``token`` opens the group ``group_id`` for ``subject`` now.

        As :meth:`check`: only a token of :meth:`sign_group` for this group and subject, at the
        same cost whatever is wrong with it. A job's token is refused. Never raises.
        """
        return self._check(token, group_id, None, subject, group=True)

    def _check(
        self,
        token: object,
        name: str,
        job_class: str | None,
        subject: str | None,
        *,
        group: bool,
    ) -> bool:
        """:meth:`check` and :meth:`check_group`: a remembered token, else the HMAC, always."""
        key = _memo_key(token, name, job_class, subject, group)
        if key is not None:
            remembered = self._accepted.get(key)
            if remembered is not None and self._fresh(remembered):
                return True
        expiry = _expiry_of(token)
        subject_value: object = subject  # callers without type checks pass anything
        text_subject = subject_value is None or isinstance(subject_value, str)
        try:
            mac = self._mac(name, job_class, expiry or 0, subject if text_subject else None, group)
        except UnicodeEncodeError:  # a lone surrogate: no token was ever signed for it
            return False
        offered = token if expiry is not None and isinstance(token, str) else ""
        matches = hmac.compare_digest(f"{_VERSION}.{expiry}.{mac}".encode(), offered.encode())
        fresh = self._fresh(expiry or 0)
        accepted = matches and text_subject and expiry is not None and fresh
        if accepted and key is not None:
            if len(self._accepted) >= MAX_ACCEPTED:
                self._accepted.clear()
            self._accepted[key] = int(key[0].split(".", 2)[1])
        return accepted

    def _fresh(self, expiry: int) -> bool:
        """Whether a token with this expiry may be accepted now (not expired, not too far)."""
        now = self._clock()
        return now <= expiry <= now + self.max_age + CLOCK_SKEW

    def _mac(
        self,
        name: str,
        job_class: str | None,
        expiry: int,
        subject: str | None,
        group: bool = False,
    ) -> str:
        kind = b"\0" if job_class is None else b"\1" + _field(job_class)
        kind = _GROUP if group else kind
        message = _field(name) + kind + _field(str(expiry))
        if subject is not None:  # appended: a message without it is a v1 token's of old
            message += _SUBJECT + _field(subject, errors="surrogatepass")
        return _encode_mac(hmac.new(self._key, message, hashlib.sha256).digest())

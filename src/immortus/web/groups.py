"""A group's answers on the web: ``GET {prefix}/groups/{group_id}`` and a batch's group items.

A group (see :mod:`immortus.groups`) is read in one store read whatever its size; the verifier
answers it with :class:`GroupAnswers` (also as an item of a batch or a multi-job stream). Its
answer:

====  ========================================================================================
200   a group with members: :meth:`GroupStatus.to_dict` (``group_id``, ``status``, ``total``,
      ``completed``, ``progress``, ``jobs``, ``error``, ``updated_at``)
400   a group id no group can have; says what
404   a group with no member, or a missing, forged or expired group token — one body for both:
      the ``unknown`` body of the group asked about (``total`` 0)
500   the configured store keeps no groups, or the routes are not secured; logged
503   the store cannot be reached
====  ========================================================================================

Error bodies are ``{"group_id", "error": {"type", "message"}}``. A group's token is signed
with :meth:`~immortus.web.tokens.JobTokens.sign_group`: it never opens a job of the same id,
nor a job's token the group. A group body's ``completed`` is a count, not a flag: the group has
ended once its ``status`` is a completed state (:func:`group_ended`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final

from immortus.exceptions import InvalidInput, StoreUnavailable
from immortus.groups import GroupStatus, group_status
from immortus.status import State
from immortus.validation import check_group_id
from immortus.web.responses import STORE_UNAVAILABLE, WebResponse, rendered, sanitise
from immortus.web.secured import NOT_SECURED, log_once
from immortus.web.tokens import JobTokens

__all__ = [
    "GroupAnswers",
    "group_answer",
    "group_ended",
    "group_error",
    "read_group",
    "unknown_group",
]

logger = logging.getLogger("immortus.web")

_FAILED: Final = "the server could not answer for this group"
#: The ``status`` values of a group that has ended.
_ENDED: Final = frozenset(state.value for state in State if state.completed)


def group_error(group_id: object, status: int, kind: str, message: str) -> WebResponse:
    """Return a group's error answer: ``{"group_id", "error": {"type", "message"}}``."""
    body = {"group_id": sanitise(group_id), "error": {"type": kind, "message": message}}
    return WebResponse(status, body)


def unknown_group(group_id: str) -> WebResponse:
    """Return the one 404 of a group: no member recorded, or a bad token (they look alike)."""
    return WebResponse(404, GroupStatus.unknown(group_id).to_dict())


def group_answer(found: GroupStatus) -> WebResponse:
    """Return the answer of a group read from the store: 200, or the 404 without members."""
    if found.total == 0:
        return unknown_group(found.group_id)
    return WebResponse(200, found.to_dict())


def read_group(group_id: str) -> WebResponse:
    """Read the group now (one store read) and return its answer; never raises.

    The caller has checked the group id and its token.
    """
    try:
        return group_answer(group_status(group_id))
    except StoreUnavailable as exc:
        logger.warning("immortus: cannot answer for group %r: %s", group_id, exc)
        return group_error(group_id, 503, "StoreUnavailable", STORE_UNAVAILABLE)
    except Exception:  # every failure becomes a bodied 500
        logger.exception("immortus: cannot answer for group %r", group_id)
        return group_error(group_id, 500, "ServerError", _FAILED)


def group_ended(body: Mapping[str, object]) -> bool:
    """Whether a group's 200 body says it has ended: every member completed."""
    return body.get("status") in _ENDED


class GroupAnswers:
    """The group requests of :class:`~immortus.web.core.Verifier`, which this is mixed into.

    The verifier sets ``secured`` (the routes serve) and ``tokens`` (``None``: routes open).
    """

    secured: bool
    tokens: JobTokens | None

    def verify_group(
        self, group_id: str, token: str | None = None, *, subject: str | None = None
    ) -> WebResponse:
        """Answer ``GET {prefix}/groups/{group_id}``: the group's aggregate body (one read).

        The codes are those of this module; the token is the one :meth:`render_group` signs.
        """
        refused = self.group_refusal(group_id, token, subject)
        return read_group(group_id) if refused is None else refused

    async def averify_group(
        self, group_id: str, token: str | None = None, *, subject: str | None = None
    ) -> WebResponse:
        """Async twin of :meth:`verify_group`: the store is read in a worker thread."""
        refused = self.group_refusal(group_id, token, subject)
        if refused is not None:
            return refused
        return await asyncio.to_thread(read_group, group_id)

    def group_refusal(
        self, group_id: object, token: object, subject: str | None
    ) -> WebResponse | None:
        """The 500, 400 or 404 answer to a group request that gets no further, or ``None``."""
        if not self.secured:
            log_once(logging.ERROR, f"immortus: {NOT_SECURED}")
            return group_error(group_id, 500, "EndpointsNotSecured", NOT_SECURED)
        try:
            name = check_group_id(group_id)
        except InvalidInput as exc:
            return group_error(group_id, 400, "InvalidInput", str(exc))
        if self.tokens is not None and not self.tokens.check_group(token, name, subject):
            return unknown_group(name)
        return None

    def render_group(self, group_id: object, *, subject: str | None = None) -> WebResponse:
        """Return what the browser needs to follow a group: ``{group_id[, token]}``.

        ``group_id`` is the id of :class:`immortus.group` (or that object itself). The token
        is bound to ``subject`` as ``render_job``'s is. Answers 500 ``{}`` (and logs why)
        when the group id is malformed, ``subject`` is not text, or the routes are not secured.
        Nothing is read from any store.
        """
        if not self.secured:
            log_once(logging.ERROR, f"immortus: render_group: {NOT_SECURED}")
            return WebResponse(500, {})
        found = getattr(group_id, "group_id", group_id)
        try:
            name = check_group_id(found)
            token = None if self.tokens is None else self.tokens.sign_group(name, subject)
        except InvalidInput as exc:
            logger.error("immortus: render_group cannot render %r: %s", found, exc)  # noqa: TRY400
            return WebResponse(500, {})
        return rendered({"group_id": name}, token)

"""The one table of immortus's routes, from which every adapter and the OpenAPI document are built.

==============================================  ==============================================
``GET  {prefix}/verify/{job_id}[/{job_class}]``  the job's verify body (200, 400, 404, 500, 503)
``POST {prefix}/verify``                         a batch: ``{"jobs": [body, ...]}`` in order
``GET  {prefix}/stream/{job_id}[/{job_class}]``  Server-Sent Events until the job is completed
``POST {prefix}/stream``                         one event stream for every job and group of a
                                                 batch body
``POST {prefix}/cancel/{job_id}[/{job_class}]``  cancel the job (200, 202, 404, 405, 409, ...)
``GET  {prefix}/groups/{group_id}``              a group's aggregate body (200, 400, 404, 503)
``GET  {prefix}/immortus.js``                    the JavaScript client, or 404 if not installed
``GET  {prefix}/immortus.mjs``                   the same client as an ES module
==============================================  ==============================================

Each :class:`Route` names its URL name (``immortus:verify`` in Starlette and Django,
``{blueprint}.verify`` in Flask), its method, its path (``{job_id}``, ``{job_class}`` and
``{group_id}`` for the path parameters) and the web-core operation that answers it. Every
``POST`` body is read by :func:`read_capped` (or :func:`aread_capped`): at most
:attr:`Route.body_limit` bytes, the rest never read, so a huge body costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Callable
from typing import Final, Literal, NamedTuple

from immortus.web.batch import MAX_BATCH_BYTES
from immortus.web.cancel import MAX_CANCEL_BYTES

__all__ = ["ROUTES", "Operation", "Route", "aread_capped", "read_capped"]

#: What answers a route: a method of :class:`~immortus.web.Verifier` (``batch`` is
#: ``verify_batch``, ``group`` is ``verify_group``), or the script file of the route's path.
Operation = Literal["verify", "batch", "stream", "stream_jobs", "cancel", "group", "script"]

_PARAMETER: Final = re.compile(r"\{(\w+)\}")


class Route(NamedTuple):
    """One route of the table."""

    #: The URL name, unique in the table.
    name: str
    #: The one method it answers (any other gets a JSON 405 with ``Allow``).
    method: Literal["GET", "POST"]
    #: The path under the prefix; ``{job_id}`` and ``{job_class}`` are path parameters.
    path: str
    #: What answers it.
    operation: Operation
    #: One line saying what it answers (the OpenAPI summary).
    summary: str

    @property
    def parameters(self) -> list[str]:
        """The names of the path's parameters, in order."""
        return _PARAMETER.findall(self.path)

    @property
    def body_limit(self) -> int:
        """Most body bytes read for this route: one past the largest body it accepts."""
        return (MAX_CANCEL_BYTES if self.operation == "cancel" else MAX_BATCH_BYTES) + 1

    def path_with(self, parameter: Callable[[str], str]) -> str:
        """The path, each ``{name}`` written as ``parameter(name)`` (a framework's syntax)."""
        return _PARAMETER.sub(lambda found: parameter(found[1]), self.path)


#: Every route. No two paths match one request; the busiest route (verify with a job class)
#: comes first, as routers try routes in order.
ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "verify_class",
        "GET",
        "/verify/{job_id}/{job_class}",
        "verify",
        "A job's status, asked with its class's strategy",
    ),
    Route("verify", "GET", "/verify/{job_id}", "verify", "A job's status"),
    Route("batch", "POST", "/verify", "batch", "The statuses of several jobs, in order"),
    Route("stream", "GET", "/stream/{job_id}", "stream", "A job's status changes (SSE)"),
    Route(
        "stream_class",
        "GET",
        "/stream/{job_id}/{job_class}",
        "stream",
        "A job's status changes (SSE), asked with its class's strategy",
    ),
    Route(
        "stream_jobs",
        "POST",
        "/stream",
        "stream_jobs",
        "The status changes of several jobs, on one event stream (SSE)",
    ),
    Route("cancel", "POST", "/cancel/{job_id}", "cancel", "Cancel a job"),
    Route(
        "cancel_class",
        "POST",
        "/cancel/{job_id}/{job_class}",
        "cancel",
        "Cancel a job, asked with its class's strategy and queue",
    ),
    Route("group", "GET", "/groups/{group_id}", "group", "A group's aggregate status"),
    Route("script", "GET", "/immortus.js", "script", "The JavaScript client"),
    Route("module", "GET", "/immortus.mjs", "script", "The JavaScript client as an ES module"),
)


def read_capped(
    read: Callable[[int], bytes], limit: int, gone: tuple[type[BaseException], ...] = ()
) -> bytes:
    """Return a request body read with ``read(n)``; once ``limit`` bytes are in, stop.

    The rest is never read. An empty body when ``read`` raises one of ``gone`` (the client left
    while sending it: nobody is left to read the answer).
    """
    body = bytearray()
    try:
        while len(body) < limit:
            chunk = read(limit - len(body))
            if not chunk:
                break
            body += chunk
    except gone:
        return b""
    return bytes(body)


async def aread_capped(
    chunks: AsyncIterable[bytes], limit: int, gone: tuple[type[BaseException], ...] = ()
) -> bytes:
    """Async twin of :func:`read_capped` for a body arriving as ``chunks``.

    The answer holds at most one chunk more than ``limit``.
    """
    body = bytearray()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) >= limit:
                break
    except gone:
        return b""
    return bytes(body)

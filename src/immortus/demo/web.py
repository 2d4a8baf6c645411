"""The web demo's Starlette app: the page, starting and cancelling sample jobs, immortus's routes.

==============================  ==========================================================
``GET  /``                      the page (``static/demo.html``): an ``<immortus-job>`` per job
``POST /jobs/{sample}``         queue a sample job; answers ``{job_id, job_class, token}``
``POST /jobs/{job_id}/cancel``  body ``{"job_class", "token"}``: revoke a job in the queue
``/immortus/...``               :func:`immortus.web.asgi.immortus_routes`: verify, stream, JS
==============================  ==========================================================

Both POSTs need the page's CSRF token in the ``X-CSRF-Token`` header (403 otherwise), as
``Immortus.create`` sends it from the page's ``<meta name="csrf-token">``. Cancelling also needs
the job's token, exactly as reading its status does: the same check
(:meth:`~immortus.web.Verifier.averify`) answers 400 for a malformed id, and the same 404 for an
unknown job, a class that is no sample, and a missing or forged token. A job that has already
ended answers 409; otherwise the job is revoked and the answer is 202: it ends ``cancelled``
at its next step, which the page sees on its stream.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from immortus.demo.queue import DemoQueue
from immortus.demo.samples import SAMPLES, SAMPLES_BY_SLUG
from immortus.exceptions import MissingDependency
from immortus.status import JobStatus
from immortus.web.core import Verifier, get_verifier
from immortus.web.responses import (
    JSON_HEADERS,
    WebResponse,
    bad_request,
    error_body,
    not_found,
    sanitise,
)

try:
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    from immortus.web.asgi import immortus_routes, render_job_response
except ImportError as exc:
    raise MissingDependency("starlette", "demo") from exc

__all__ = ["CSRF_HEADER", "PAGE_PATH", "create_app", "render_page"]

#: The page's template: one HTML file with its CSS and JavaScript inline.
PAGE_PATH: Final = Path(__file__).with_name("static") / "demo.html"
#: The largest cancel request body read; a larger one is a 400.
MAX_CANCEL_BYTES: Final = 4096

#: The header a POST must carry, holding the page's CSRF token (``Immortus.create`` sends it).
CSRF_HEADER: Final = "X-CSRF-Token"

_SAMPLES_MARK: Final = "{{ samples }}"
_NONCE_MARK: Final = "{{ nonce }}"
_CSRF_MARK: Final = "{{ csrf_token }}"


def _page_headers(nonce: str) -> dict[str, str]:
    """No caching, and a policy that runs only our scripts: the client and the page's own."""
    policy = (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": policy,
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
    }


def render_page(template: str, *, nonce: str, csrf_token: str) -> str:
    """Return the page: ``template`` with the samples (as JSON), script nonce and CSRF token.

    The JSON sits in a ``<script type="application/json">`` block, so every ``<``, ``>`` and
    ``&`` in it is escaped: no text of a sample can close the block.
    """
    samples = [
        {
            "slug": sample.slug,
            "title": sample.title,
            "shows": sample.shows,
            "job_class": sample.job_class,
            "cancellable": sample.cancellable,
        }
        for sample in SAMPLES
    ]
    data = json.dumps(samples, ensure_ascii=True)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = template.replace(_SAMPLES_MARK, data).replace(_NONCE_MARK, nonce)
    return page.replace(_CSRF_MARK, html.escape(csrf_token))


def _send(answer: WebResponse) -> Response:
    return Response(answer.content(), answer.status, dict(answer.headers))


def _json(status: int, body: Mapping[str, Any]) -> Response:
    return _send(WebResponse(status, body, JSON_HEADERS))


async def _read_body(request: Request, limit: int) -> bytes | None:
    """Return the request body, or ``None`` once it is over ``limit`` bytes (not read further)."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return None
    except ClientDisconnect:
        return b""
    return bytes(body)


def _forbidden() -> Response:
    message = f"a POST needs the page's CSRF token in the {CSRF_HEADER} header"
    return _json(403, error_body(None, "CSRFFailed", message))


def _cancel_request(job_id: str, body: bytes | None) -> tuple[str, str | None] | WebResponse:
    """Return the job class and token a cancel request names, or its 400 answer."""
    if body is None:
        return bad_request(job_id, f"the body is over {MAX_CANCEL_BYTES} bytes")
    try:
        asked = json.loads(body or b"{}")
    except ValueError:
        asked = None
    if not isinstance(asked, dict):
        return bad_request(job_id, 'the body must be {"job_class": ..., "token": ...}')
    job_class, token = asked.get("job_class"), asked.get("token")
    if not isinstance(job_class, str) or not isinstance(token, str | None):
        return bad_request(job_id, "job_class must be a string, token a string or null")
    return job_class, token


class _Handlers:
    """The demo's own routes, bound to its queue and verifier."""

    def __init__(
        self, queue: DemoQueue, verifier: Verifier | None, template: str, csrf_token: str
    ) -> None:
        self.queue = queue
        self.verifier = verifier
        self.template = template
        self.csrf_token = csrf_token

    def _verifier(self) -> Verifier:
        return self.verifier or get_verifier()

    def _forged(self, request: Request) -> bool:
        """Whether a POST lacks the page's CSRF token (a form on another site cannot send it)."""
        given = request.headers.get(CSRF_HEADER, "")
        return not secrets.compare_digest(given.encode(), self.csrf_token.encode())

    async def page(self, request: Request) -> Response:
        """``GET /``: the page, with a fresh script nonce."""
        nonce = secrets.token_urlsafe(16)
        page = render_page(self.template, nonce=nonce, csrf_token=self.csrf_token)
        return HTMLResponse(page, headers=_page_headers(nonce))

    async def start(self, request: Request) -> Response:
        """``POST /jobs/{sample}``: queue the sample; answer what the page needs to follow it."""
        if self._forged(request):
            return _forbidden()
        name = request.path_params["sample"]
        sample = SAMPLES_BY_SLUG.get(name)
        if sample is None:
            known = ", ".join(SAMPLES_BY_SLUG)
            return _send(not_found(f"no sample job is named {sanitise(name)!r}; try: {known}"))
        job_id = await anyio.to_thread.run_sync(self.queue.enqueue, sample)
        return render_job_response(job_id, sample.job_class, verifier=self._verifier())

    async def cancel(self, request: Request) -> Response:
        """``POST /jobs/{job_id}/cancel``: revoke the job, if the token opens it."""
        if self._forged(request):
            return _forbidden()
        job_id = request.path_params["job_id"]
        asked = _cancel_request(job_id, await _read_body(request, MAX_CANCEL_BYTES))
        if isinstance(asked, WebResponse):
            return _send(asked)
        job_class, token = asked
        answer = await self._verifier().averify(job_id, job_class, token)
        if answer.status != 200:
            return _send(answer)
        if not any(sample.job_class == job_class for sample in SAMPLES):
            return _json(404, JobStatus.unknown(job_id, job_class).to_dict())
        if answer.body["completed"]:
            message = f"the job has already ended: {answer.body['status']}"
            return _json(409, error_body(job_id, "AlreadyCompleted", message))
        await anyio.to_thread.run_sync(self.queue.cancel, job_id)
        return _json(202, {"job_id": job_id, "job_class": job_class, "cancelling": True})


def create_app(
    queue: DemoQueue, *, verifier: Verifier | None = None, csrf_token: str | None = None
) -> Starlette:
    """Return the demo's app, which queues jobs on ``queue``; it does not start the consumer.

    ``verifier`` answers for jobs and signs their tokens; by default the one of the current
    settings (:func:`immortus.web.get_verifier`). ``csrf_token`` is the token the page carries
    and every POST must send back in :data:`CSRF_HEADER` (default: a new random one).

    Raises:
        OSError: the page's template cannot be read.
    """
    template = PAGE_PATH.read_text(encoding="utf-8")
    handlers = _Handlers(queue, verifier, template, csrf_token or secrets.token_urlsafe(32))
    return Starlette(
        routes=[
            Route("/", handlers.page, methods=["GET"], name="page"),
            Route("/jobs/{sample}", handlers.start, methods=["POST"], name="start"),
            Route("/jobs/{job_id}/cancel", handlers.cancel, methods=["POST"], name="cancel"),
            immortus_routes(verifier=verifier),
        ]
    )

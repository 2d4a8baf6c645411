"""An adapter's ``render_job_response``: :func:`immortus.web.render_job` in its response type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from immortus.web.core import Verifier, render_job
from immortus.web.responses import WebResponse

__all__ = ["JobResponder", "job_responder"]

Answer = TypeVar("Answer")
Answer_co = TypeVar("Answer_co", covariant=True)


class JobResponder(Protocol[Answer_co]):
    """An adapter's ``render_job_response``: :func:`render_job` in the framework's response."""

    def __call__(
        self,
        job: object,
        job_class: str | None = None,
        *,
        verifier: Verifier | None = None,
        subject: str | None = None,
    ) -> Answer_co:
        """Return the framework's response of :func:`render_job` for ``job``."""
        ...


def job_responder(convert: Callable[[WebResponse], Answer], note: str) -> JobResponder[Answer]:
    """Return the ``render_job_response`` of an adapter whose responses ``convert`` makes.

    ``note`` ends its docstring: what a view of that framework passes as ``subject``.
    """

    def render_job_response(
        job: object,
        job_class: str | None = None,
        *,
        verifier: Verifier | None = None,
        subject: str | None = None,
    ) -> Answer:
        return convert(render_job(job, job_class, subject=subject, verifier=verifier))

    render_job_response.__doc__ = (
        ":func:`immortus.web.render_job` as a response, for an enqueue view: "
        f"``{{job_id, job_class[, token]}}``, or 500 ``{{}}``.\n\n{note}"
    )
    return render_job_response

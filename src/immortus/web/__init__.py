"""The framework-neutral web layer: what every framework adapter translates.

    from immortus.web import get_verifier

    answer = get_verifier().verify(job_id, job_class, token)
    # -> answer.status, answer.headers, answer.content()

Importing ``immortus.web`` loads only the standard library and immortus's core; framework
adapters live in their own modules and import their framework there. See ``docs/web.md``.
"""

from immortus.web.batch import MAX_BATCH, MAX_BATCH_BYTES
from immortus.web.core import Verifier, get_verifier, render_group, render_job
from immortus.web.multistream import MultiStreamResponse
from immortus.web.responses import WebResponse
from immortus.web.stream import StreamResponse
from immortus.web.stream_limits import StreamLimits
from immortus.web.tokens import JobTokens

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "JobTokens",
    "MultiStreamResponse",
    "StreamLimits",
    "StreamResponse",
    "Verifier",
    "WebResponse",
    "get_verifier",
    "render_group",
    "render_job",
]

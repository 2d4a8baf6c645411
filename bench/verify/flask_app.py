"""The Flask app that ``bench/verify/`` runs under gunicorn: immortus, a bare route.

``/immortus/...`` is immortus's blueprint (``immortus_blueprint()``) over the SQLite store named
by ``IMMORTUS_BENCH_STORE``; ``GET /bare/<job_id>/<job_class>`` answers a fixed JSON body as
long as a seeded job's verify body, with the same headers, and does nothing else. Both are
served by the same gunicorn worker through the same Flask app. ``/kept/...`` are the same
routes answered by a verifier that keeps the statuses it read lately.
"""

from __future__ import annotations

from flask import Flask, Response

import immortus
from bench.verify.common import (
    ANSWER_STALENESS,
    KEPT_PREFIX,
    SECRET_KEY,
    app_settings,
    track_job_class,
)
from immortus.web.core import Verifier
from immortus.web.flask import immortus_blueprint
from immortus.web.responses import JSON_HEADERS

__all__ = ["app"]

SETTINGS = app_settings()
track_job_class()
immortus.configure(store=SETTINGS.store_url, secret_key=SECRET_KEY)

app = Flask(__name__)
app.register_blueprint(immortus_blueprint())
kept = Verifier(secret_key=SECRET_KEY, answer_staleness=ANSWER_STALENESS)
app.register_blueprint(immortus_blueprint(KEPT_PREFIX, verifier=kept, name="kept"))


@app.get("/bare/<job_id>/<job_class>")
def bare(job_id: str, job_class: str) -> Response:
    """The baseline: the same path shape, a body of the same size, no work."""
    return Response(SETTINGS.bare, 200, dict(JSON_HEADERS))

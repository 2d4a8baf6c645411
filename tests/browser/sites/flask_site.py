"""The Flask test site, under Werkzeug's threaded server: ``python -m ...sites.flask_site``."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

import immortus
from immortus.web.flask import immortus_blueprint, render_job_response
from immortus.web.stream_limits import StreamLimits
from tests.browser.sites import jobs


def make_app() -> Flask:
    """The site: the test pages, the job routes and immortus's blueprint."""
    app = Flask(__name__)

    @app.get("/")
    @app.get("/pages/<name>")
    def home(name: str = "page") -> Response:
        text = jobs.page(name)
        if text is None:
            return Response("not found", 404)
        return Response(text, mimetype="text/html")

    @app.post("/jobs")
    def create_job() -> Response:
        try:
            job_id, job_class = jobs.start_job(request.get_json(force=True))
        except ValueError as exc:
            return Response(str(exc), 400)
        return render_job_response(job_id, job_class)

    @app.post("/jobs/<job_id>/step")
    def step_job(job_id: str) -> Response:
        released = jobs.BOARD.step(job_id)
        answer = jsonify(released=released)
        answer.status_code = 200 if released else 404
        return answer

    @app.get("/custom/<job_id>")
    def custom_verify(job_id: str) -> Response:
        status, body = jobs.custom_verify(job_id)
        answer = jsonify(body)
        answer.status_code = status
        answer.headers["Cache-Control"] = "no-store"
        return answer

    app.register_blueprint(immortus_blueprint())
    # Streams that end after a fraction of a second: the client opens them again.
    short = StreamLimits.wsgi(lifetime=0.3, reconnect=0.1)
    app.register_blueprint(immortus_blueprint("/short", name="short", streams=short))
    return app


def main() -> None:
    arguments = jobs.parse_arguments()
    immortus.configure(**jobs.settings(arguments.store))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    jobs.announce(arguments.port_file, server.server_port)
    server.serve_forever()


if __name__ == "__main__":
    main()

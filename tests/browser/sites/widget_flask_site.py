"""Flask and ``render_template_string`` rendering the widget (run with ``python -m``)."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template_string, request
from werkzeug.serving import make_server

import immortus
from immortus.web.flask import immortus_blueprint
from immortus.web.jinja import install
from tests.browser.sites import done_when, jobs, widget_pages


def current_user() -> str | None:
    """The subject of the current request: its ``user`` cookie."""
    return request.cookies.get(widget_pages.USER_COOKIE)


def make_app() -> Flask:
    """The site: a blank page, the job routes, the report page and immortus's blueprint."""
    app = Flask(__name__)
    install(app.jinja_env, subject=current_user)

    @app.get("/pages/blank")
    def blank() -> Response:
        return Response(jobs.BLANK_PAGE, mimetype="text/html")

    @app.post("/jobs")
    def create_job() -> Response:
        job_id, job_class = jobs.start_job(request.get_json(force=True))
        return jsonify(widget_pages.job_of(job_id, job_class))

    @app.post("/jobs/<job_id>/step")
    def step_job(job_id: str) -> Response:
        released = jobs.BOARD.step(job_id)
        answer = jsonify(released=released)
        answer.status_code = 200 if released else 404
        return answer

    @app.get("/report/<job_id>/<job_class>")
    def report(job_id: str, job_class: str) -> str:
        job = widget_pages.job_of(job_id, job_class)
        return render_template_string(widget_pages.JINJA_PAGE, job=job)

    @app.post("/imports")
    def start_scene() -> Response:
        return jsonify(done_when.start())

    @app.get("/imports/<scene>")
    def scene_page(scene: str) -> str | tuple[str, int]:
        context = done_when.page_context(scene)
        if context is None:
            return "no such scene", 404
        return render_template_string(done_when.JINJA_PAGE, **context)

    @app.post("/imports/<scene>/finish")
    def finish_scene(scene: str) -> Response:
        finished = done_when.finish(scene)
        answer = jsonify(finished=finished)
        answer.status_code = 200 if finished else 404
        return answer

    app.register_blueprint(immortus_blueprint(subject=current_user))
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

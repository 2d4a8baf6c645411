"""Starlette and ``Jinja2Templates`` rendering the widget (run with ``python -m``)."""

from __future__ import annotations

import json

import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

import immortus
from immortus.web.asgi import immortus_routes
from immortus.web.jinja import install
from tests.browser.sites import jobs, widget_pages

loader = jinja2.DictLoader({"report.html": widget_pages.JINJA_PAGE})
templates = Jinja2Templates(env=jinja2.Environment(loader=loader, autoescape=True))
install(templates.env, request_subject=widget_pages.request_subject)


async def blank(request: Request) -> Response:
    return HTMLResponse(jobs.BLANK_PAGE)


async def create_job(request: Request) -> Response:
    job_id, job_class = jobs.start_job(json.loads(await request.body()))
    return JSONResponse(widget_pages.job_of(job_id, job_class))


async def step_job(request: Request) -> Response:
    released = jobs.BOARD.step(request.path_params["job_id"])
    return JSONResponse({"released": released}, status_code=200 if released else 404)


async def report(request: Request) -> Response:
    job = widget_pages.job_of(request.path_params["job_id"], request.path_params["job_class"])
    return templates.TemplateResponse(request, "report.html", {"job": job})


def main() -> None:
    arguments = jobs.parse_arguments()
    immortus.configure(**jobs.settings(arguments.store))
    app = Starlette(
        routes=[
            Route("/pages/blank", blank),
            Route("/jobs", create_job, methods=["POST"]),
            Route("/jobs/{job_id}/step", step_job, methods=["POST"]),
            Route("/report/{job_id}/{job_class}", report),
            immortus_routes(subject=widget_pages.request_subject),
        ]
    )
    sock = jobs.listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    jobs.announce(arguments.port_file, sock.getsockname()[1])
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

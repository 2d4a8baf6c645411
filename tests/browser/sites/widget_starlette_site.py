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
from tests.browser.sites import done_when, jobs, widget_pages

loader = jinja2.DictLoader(
    {"report.html": widget_pages.JINJA_PAGE, "imports.html": done_when.JINJA_PAGE}
)
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


async def start_scene(request: Request) -> Response:
    return JSONResponse(done_when.start())


async def scene_page(request: Request) -> Response:
    context = done_when.page_context(request.path_params["scene"])
    if context is None:
        return HTMLResponse("no such scene", status_code=404)
    return templates.TemplateResponse(request, "imports.html", context)


async def finish_scene(request: Request) -> Response:
    finished = done_when.finish(request.path_params["scene"])
    return JSONResponse({"finished": finished}, status_code=200 if finished else 404)


def main() -> None:
    arguments = jobs.parse_arguments()
    immortus.configure(**jobs.settings(arguments.store))
    app = Starlette(
        routes=[
            Route("/pages/blank", blank),
            Route("/jobs", create_job, methods=["POST"]),
            Route("/jobs/{job_id}/step", step_job, methods=["POST"]),
            Route("/report/{job_id}/{job_class}", report),
            Route("/imports", start_scene, methods=["POST"]),
            Route("/imports/{scene}", scene_page),
            Route("/imports/{scene}/finish", finish_scene, methods=["POST"]),
            immortus_routes(subject=widget_pages.request_subject),
        ]
    )
    sock = jobs.listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    jobs.announce(arguments.port_file, sock.getsockname()[1])
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

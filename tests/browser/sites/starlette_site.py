"""The Starlette test site, under uvicorn: ``python -m tests.browser.sites.starlette_site``."""

from __future__ import annotations

import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

import immortus
from immortus.web.asgi import immortus_routes, render_job_response
from immortus.web.stream_limits import StreamLimits
from tests.browser.sites import jobs


async def home(request: Request) -> Response:
    text = jobs.page(request.path_params.get("name", "page"))
    return HTMLResponse("not found", 404) if text is None else HTMLResponse(text)


async def create_job(request: Request) -> Response:
    try:
        job_id, job_class = jobs.start_job(json.loads(await request.body()))
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return render_job_response(job_id, job_class)


async def step_job(request: Request) -> Response:
    released = jobs.BOARD.step(request.path_params["job_id"])
    return JSONResponse({"released": released}, status_code=200 if released else 404)


async def redirect(request: Request) -> Response:
    """``POST /redirect?to=URL``: answer 307 to ``URL`` (a redirect that keeps the POST)."""
    return Response(status_code=307, headers={"Location": request.query_params["to"]})


async def cancel_job(request: Request) -> Response:
    """``POST /cancel/{job_id}``: end the job ``cancelled``; 404 for a job it never started."""
    cancelled = jobs.cancel_job(request.path_params["job_id"], json.loads(await request.body()))
    return JSONResponse({"cancelling": cancelled}, status_code=202 if cancelled else 404)


async def custom_verify(request: Request) -> Response:
    status, body = jobs.custom_verify(request.path_params["job_id"])
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def main() -> None:
    arguments = jobs.parse_arguments()
    immortus.configure(**jobs.settings(arguments.store))
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/pages/{name:str}", home),
            Route("/jobs", create_job, methods=["POST"]),
            Route("/jobs/{job_id}/step", step_job, methods=["POST"]),
            Route("/custom/{job_id}", custom_verify),
            Route("/redirect", redirect, methods=["POST"]),
            Route("/cancel/{job_id}", cancel_job, methods=["POST"]),
            immortus_routes(),
            # Streams that end after a fraction of a second: the client opens them again.
            immortus_routes("/short", streams=StreamLimits.asgi(lifetime=0.3, reconnect=0.1)),
        ]
    )
    sock = jobs.listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    jobs.announce(arguments.port_file, sock.getsockname()[1])
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

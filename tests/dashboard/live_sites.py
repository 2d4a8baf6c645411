"""The four dashboards of the live test, over one store at once, each with its own browser user.

- **Starlette**: :func:`~immortus.web.dashboard.starlette.dashboard_routes` under uvicorn, in
  the test process;
- **Flask**: :func:`~immortus.web.dashboard.flask.dashboard_blueprint` under Werkzeug's
  threaded server, in the test process;
- **Django**: the Django mount in a project process of its own (:mod:`.django_site`), its
  user a logged-in staff member;
- **standalone**: ``immortus dashboard --store URL --token TOKEN`` on 127.0.0.1, logged in
  through its ``/login`` form.

Each site's pages open in a browser context of their own: cookies are per host, not per port,
and each dashboard keeps its own CSRF token.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page
from starlette.applications import Starlette

from immortus.web.dashboard.flask import dashboard_blueprint
from immortus.web.dashboard.starlette import dashboard_routes
from tests.dashboard.live_app import JOBS_ENV, RQ_ENV
from tests.queues.workers import WorkerProcess, running_worker, worker_environment
from tests.services.base import HOST
from tests.web.servers import serve_asgi, serve_werkzeug

__all__ = ["Site", "four_sites"]

#: The standalone dashboard's token (``--token``).
TOKEN: Final = "live-dashboard-token"  # noqa: S105 - a test's token
#: Where the Django project mounts the dashboard.
DJANGO_PREFIX: Final = "django-ops"
#: The longest wait for one outcome on a page (generous: never a timing assertion).
TIMEOUT_MS: Final = 30_000


@dataclass(frozen=True, slots=True)
class Site:
    """One dashboard: its name, its base URL (prefix included) and its user's page."""

    name: str
    url: str
    page: Page


def _anyone(request: Any) -> bool:
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _open(browser: Browser, stack: ExitStack) -> tuple[BrowserContext, Page]:
    """A new browser user and its page: confirm dialogs accepted, CSP bypassed for axe."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
    stack.callback(context.close)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    return context, page


def _process(name: str, command: list[str], env: dict[str, str], log: Path) -> WorkerProcess:
    return WorkerProcess(name, [sys.executable, "-m", *command], env=env, log=log)


@contextmanager
def four_sites(
    browser: Browser, folder: Path, store_url: str, jobs: Mapping[str, str], rq_url: str
) -> Iterator[list[Site]]:
    """Serve the four dashboards over ``store_url``; yield them, Starlette first.

    ``jobs`` (``{job_class: queue}``, RQ's excepted) and ``rq_url`` are what the processes of
    their own are told (:mod:`.live_app`).
    """
    env = worker_environment(store_url, **{JOBS_ENV: json.dumps(jobs), RQ_ENV: rq_url})
    with ExitStack() as stack:
        django = _process(
            "the Django dashboard",
            ["tests.dashboard.django_site", str(folder), DJANGO_PREFIX],
            env,
            folder / "django.log",
        )
        stack.enter_context(running_worker(django))
        port = _free_port()
        standalone = _process(
            "immortus dashboard",
            ["immortus", "dashboard", "--app", "tests.dashboard.live_app:setup()",
             "--store", store_url, "--host", HOST, "--port", str(port), "--token", TOKEN],
            env,
            folder / "standalone.log",
        )  # fmt: skip
        # uvicorn stops gracefully on SIGTERM, then re-raises it: its exit code is -15.
        stack.enter_context(running_worker(standalone, clean_exit=False))

        starlette = Starlette(routes=[dashboard_routes("/starlette-ops", authorize=_anyone)])
        starlette_url = stack.enter_context(serve_asgi(starlette))
        flask = Flask(__name__)
        flask.register_blueprint(dashboard_blueprint("/flask-ops", authorize=_anyone))
        flask_url = stack.enter_context(serve_werkzeug(flask))
        sites = [
            Site("starlette", f"{starlette_url}/starlette-ops", _open(browser, stack)[1]),
            Site("flask", f"{flask_url}/flask-ops", _open(browser, stack)[1]),
        ]

        site_file = folder / "site.json"
        django.wait_until_ready(site_file.exists)
        served = json.loads(site_file.read_text())
        context, page = _open(browser, stack)
        django_url = f"http://{HOST}:{served['port']}"
        context.add_cookies([{"name": "sessionid", "value": served["session"], "url": django_url}])
        sites.append(Site("django", f"{django_url}/{DJANGO_PREFIX}", page))

        standalone_url = f"http://{HOST}:{port}"
        standalone.wait_until_ready(lambda: _listening(port))
        page = _open(browser, stack)[1]
        page.goto(f"{standalone_url}/login")
        page.get_by_label("Token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{standalone_url}/")
        sites.append(Site("standalone", standalone_url, page))
        yield sites


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0

"""What the widget-helper sites share: the page of one job, in Jinja2 and Django templates.

Each site renders ``/report/{job_id}/{job_class}`` with its framework's helper and nothing else:
the immortus script tag and one ``<immortus-job>``, no JavaScript of the page's own. Tokens are
bound to the ``user`` cookie, read by the same function on the routes and in the template.
"""

from __future__ import annotations

from typing import Any, Final

#: The cookie holding the user each site binds its tokens to.
USER_COOKIE: Final = "user"
#: The card's title on every site's page.
LABEL: Final = "Import rows"

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Report</title>
  {script}
</head>
<body>
  <main>
    <h1>Report</h1>
    {widget}
  </main>
</body>
</html>
"""

#: The page as a Jinja2 template (Flask, Starlette), with ``immortus.web.jinja.install``.
JINJA_PAGE: Final = _PAGE.format(
    script="{{ immortus_script() }}", widget=f'{{{{ immortus_job(job, label="{LABEL}") }}}}'
)
#: The page as a Django template, with ``{% load immortus %}``.
DJANGO_PAGE: Final = "{% load immortus %}" + _PAGE.format(
    script="{% immortus_script %}", widget=f'{{% immortus_job job label="{LABEL}" %}}'
)


def job_of(job_id: str, job_class: str) -> dict[str, str]:
    """The job a page follows, as an enqueue view would have it."""
    return {"job_id": job_id, "job_class": job_class}


def request_subject(request: Any) -> str | None:
    """The subject of a Starlette request: its ``user`` cookie."""
    user: str | None = request.cookies.get(USER_COOKIE)
    return user


def django_subject(request: Any) -> str | None:
    """The ``IMMORTUS_SUBJECT`` function of the Django site: the ``user`` cookie."""
    user: str | None = request.COOKIES.get(USER_COOKIE)
    return user

"""Run by ``test_django.py`` in its own interpreter: Django's settings are process-wide.

Checks the Django mount with Django's test client, CSRF checks enforced: anonymous users are
sent to the login page, non-staff users get 403, staff see the jobs, a permission setting
replaces the staff check, and ``prune`` needs Django's CSRF token. Exits 0 when all hold.
"""

from __future__ import annotations

import re

import django
from django.conf import settings

from tests.dashboard.django_parts import DASHBOARD_APPS, DASHBOARD_MIDDLEWARE

settings.configure(
    DEBUG=False,
    SECRET_KEY="dashboard-tests",  # noqa: S106 - a test's key
    ALLOWED_HOSTS=["testserver"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=DASHBOARD_APPS,
    MIDDLEWARE=DASHBOARD_MIDDLEWARE,
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    LOGIN_URL="/login/",
)
django.setup()

from django.contrib.auth.models import Permission, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import include, path  # noqa: E402

from immortus import config  # noqa: E402
from immortus.stores.memory import MemoryStore  # noqa: E402
from tests.dashboard.conftest import HOSTILE_ID, fill  # noqa: E402

urlpatterns = [path("ops/jobs/", include("immortus.web.dashboard.django.urls"))]


def main() -> None:
    """Check every rule; an ``AssertionError`` exits non-zero."""
    call_command("migrate", verbosity=0)
    store = MemoryStore()
    fill(store)
    config.configure(store=store)
    staff = User.objects.create_user("staff", is_staff=True)
    User.objects.create_user("plain")
    client = Client(enforce_csrf_checks=True)

    anonymous = client.get("/ops/jobs/jobs")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/")

    client.force_login(User.objects.get(username="plain"))
    assert client.get("/ops/jobs/jobs").status_code == 403

    client.force_login(staff)
    listing = client.get("/ops/jobs/jobs")
    assert listing.status_code == 200
    assert b"done-1" in listing.content
    assert HOSTILE_ID.encode() not in listing.content
    assert client.get("/ops/jobs/jobs?state=nope").status_code == 400

    overview = client.get("/ops/jobs/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', overview)
    assert token is not None, "the overview's form carries Django's CSRF token"
    assert client.post("/ops/jobs/prune", {}).status_code == 403
    done = client.post("/ops/jobs/prune", {"csrfmiddlewaretoken": token.group(1)})
    assert done.status_code == 200, done.content

    settings.IMMORTUS_DASHBOARD_PERMISSION = "auth.view_user"
    client.force_login(User.objects.get(username="plain"))
    assert client.get("/ops/jobs/").status_code == 403
    plain = User.objects.get(username="plain")
    plain.user_permissions.add(Permission.objects.get(codename="view_user"))
    client.force_login(User.objects.get(username="plain"))
    assert client.get("/ops/jobs/").status_code == 200
    print("ok")


if __name__ == "__main__":
    main()

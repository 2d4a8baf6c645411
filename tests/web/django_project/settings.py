"""Settings of the test project: no database, real middleware (CSRF included), no DEBUG."""

from __future__ import annotations

SECRET_KEY = "django-insecure-immortus-tests-only"  # noqa: S105  # a test key, never deployed
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "tests.web.django_project.urls"
INSTALLED_APPS = ["immortus.web.django"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": []}]
DATABASES: dict[str, object] = {}
IMMORTUS = {"token_max_age": 3600, "progress_interval": 0}

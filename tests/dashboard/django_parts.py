"""What every Django project of the dashboard tests installs: the apps and the middleware."""

#: Auth, sessions and the dashboard's app.
DASHBOARD_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "immortus.web.dashboard.django",
]
#: Sessions, CSRF (the dashboard's actions are protected by it) and authentication.
DASHBOARD_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

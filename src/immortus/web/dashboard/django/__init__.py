"""The dashboard in Django: ``path("ops/jobs/", include("immortus.web.dashboard.django.urls"))``.

Served to staff users by default (others: 403; anonymous: a redirect to the login page), or
to users with the permission named by the ``IMMORTUS_DASHBOARD_PERMISSION`` setting. Actions
are protected by Django's own CSRF middleware. Add ``"immortus.web.dashboard.django"`` to
``INSTALLED_APPS`` only if you want its system check; the URLs work without it.
"""

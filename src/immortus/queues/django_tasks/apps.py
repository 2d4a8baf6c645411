"""The Django app of the task integration: ``"immortus.queues.django_tasks"`` in INSTALLED_APPS."""

from __future__ import annotations

from django.apps import AppConfig

from immortus.queues.django_tasks.hooks import install


class ImmortusDjangoTasksConfig(AppConfig):
    """Installs the task hooks when Django starts; the app label is ``immortus_django_tasks``."""

    name = "immortus.queues.django_tasks"
    label = "immortus_django_tasks"
    verbose_name = "immortus: Django tasks"

    def ready(self) -> None:
        """Called once by ``django.setup()``: connect immortus to the task signals. Never raises."""
        install()

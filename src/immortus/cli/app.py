"""Load the user's app, so the command resolves strategies exactly as the app does.

``--app myproject.tasks`` (or ``$IMMORTUS_APP``) imports a module the way ``celery -A`` does:
its ``immortus.configure(...)``, ``@immortus.track`` and queue ``install()`` calls run, so the
command knows the app's store, global strategy and tracked jobs. ``module:name`` also fetches an
attribute (``myproject.celery:app``) and ``module:factory()`` calls it with no arguments (an
app factory). A module with an ``INSTALLED_APPS`` setting is a Django settings module:
``DJANGO_SETTINGS_MODULE`` is set to it and ``django.setup()`` runs, as it does with
``--django-settings MODULE``. The working directory is searched first, as by ``python -m``.

Then the command line wins: ``--store`` and ``--strategy`` replace what the app configured (a
note on standard error says so).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import immortus
from immortus.cli.codes import warn
from immortus.config import DEFAULT_STORE_URL, STORE_ENV, describe_store
from immortus.exceptions import ConfigurationError, MissingDependency

__all__ = ["APP_ENV", "Origins", "load_app", "setup", "sqlite_file"]

T = TypeVar("T")

#: The environment variable that names the app when ``--app`` is not given.
APP_ENV: Final = "IMMORTUS_APP"
#: Django's own variable naming the settings module.
DJANGO_SETTINGS_ENV: Final = "DJANGO_SETTINGS_MODULE"


@dataclass(frozen=True, slots=True)
class Origins:
    """Where the settings in force came from, for ``immortus config``."""

    #: The app loaded (as given), or ``None``.
    app: str | None
    #: ``"--store"``, ``"the app"``, ``"$IMMORTUS_STORE"`` or ``"the default"``.
    store: str
    #: ``"--strategy"``, ``"the app"`` or ``"the default"``.
    strategy: str


def setup(
    *,
    app: str | None,
    django_settings: str | None,
    store: str | None,
    strategy: str | None,
) -> Origins:
    """Load the app (if any), then apply ``--store`` and ``--strategy`` over its settings.

    Raises:
        ConfigurationError: the app cannot be loaded, or a setting is unusable.
        MissingDependency: Django is needed and not installed.
    """
    app = app or os.environ.get(APP_ENV) or None
    environment_store = os.environ.get(STORE_ENV)
    if app is None and django_settings is None:
        # No app: the command line, the environment, the default; nothing to override.
        settings: dict[str, object] = {"store": store or environment_store or DEFAULT_STORE_URL}
        if strategy:
            settings["strategy"] = strategy
        immortus.configure(**settings)
        source = "--store" if store else f"${STORE_ENV}" if environment_store else "the default"
        return Origins(None, source, "--strategy" if strategy else "the default")
    before = immortus.get_config()
    load_app(app, django_settings=django_settings)
    loaded = immortus.get_config()
    store_source = (
        "the app"
        if loaded.store != before.store
        else f"${STORE_ENV}"
        if environment_store
        else "the default"
    )
    strategy_source = "the app" if loaded.strategy != before.strategy else "the default"
    if store:
        if loaded.store != store:
            shown = describe_store(loaded.store) or "none: store tracking disabled"
            warn(f"--store replaces the store the app uses ({shown})")
        immortus.configure(store=store)
        store_source = "--store"
    if strategy:
        if loaded.strategy is not None and loaded.strategy != strategy:
            warn(f"--strategy replaces the app's global strategy ({loaded.strategy!r})")
        immortus.configure(strategy=strategy)
        strategy_source = "--strategy"
    return Origins(app or django_settings, store_source, strategy_source)


def load_app(spec: str | None, *, django_settings: str | None = None) -> None:
    """Import the app ``spec`` names (``module``, ``module:name`` or ``module:factory()``).

    With ``django_settings``, Django is set up before the app is imported, so the app's modules
    may use its models; a ``spec`` that is itself a Django settings module (it has
    ``INSTALLED_APPS``) is set up as one after it is imported.

    Raises:
        ConfigurationError: the module cannot be imported or raised while importing, the
            attribute is missing, the factory raised, or ``django.setup()`` failed; the original
            error is the ``__cause__``.
        MissingDependency: Django is needed and not installed.
    """
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    if django_settings is not None:
        _setup_django(django_settings)
    if spec is None:
        return
    module_name, _, attribute = spec.partition(":")
    label = f"the app {spec!r}"
    module = _run(label, lambda: importlib.import_module(module_name))
    if attribute:
        call = attribute.endswith("()")
        name = attribute.removesuffix("()")
        if not name.isidentifier() or not hasattr(module, name):
            raise ConfigurationError(f"cannot load {label}: {module_name} has no {name!r}")
        value = getattr(module, name)
        if call:
            _run(label, value)
    elif django_settings is None and hasattr(module, "INSTALLED_APPS"):
        _setup_django(module_name)


def _setup_django(settings: str) -> None:
    try:
        import django  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependency("django", "django") from exc
    os.environ[DJANGO_SETTINGS_ENV] = settings
    _run(f"the Django settings {settings!r}", django.setup)


def _run(label: str, step: Callable[[], T]) -> T:
    """Run one step of loading ``label``; whatever it raises becomes a ConfigurationError."""
    try:
        return step()
    except (Exception, SystemExit) as exc:
        kind = type(exc).__name__
        raise ConfigurationError(f"cannot load {label}: {kind}: {exc}") from exc


def sqlite_file(url: str) -> Path | None:
    """The absolute path of the file a plain ``sqlite:///`` URL names, else ``None``."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not rest.startswith("/") or ":memory:" in rest:
        return None
    return Path(rest[1:]).resolve()

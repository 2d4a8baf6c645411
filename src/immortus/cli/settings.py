"""``immortus config``: where tracking goes, as the app (``--app``) and the command line set it.

Nothing is opened or changed: the store is named, not reached. The values come from
:func:`immortus.config.describe` (passwords hidden, an SQLite file's absolute path, the secret
key only as set or not), plus where the store and strategy settings came from and whether an
SQLite file exists yet.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

import immortus
from immortus.cli.app import sqlite_file
from immortus.cli.codes import EXIT_OK
from immortus.cli.commands import prepare
from immortus.config import describe
from immortus.watching import safe_text

__all__ = ["configuration", "show_config"]

#: Seconds in the human form of the settings that are durations.
_SECONDS = ("token_max_age", "progress_interval", "heartbeat_interval", "heartbeat_timeout", "ttl")


def configuration(args: argparse.Namespace) -> dict[str, object]:
    """The settings in force after loading the app and applying the command line, as a dict.

    Raises:
        ConfigurationError: as :func:`immortus.cli.commands.prepare`.
    """
    origins = prepare(args)
    described = describe()
    url = immortus.get_config().store
    path = sqlite_file(url) if isinstance(url, str) else None
    return {
        "app": origins.app,
        **described,
        "store_from": origins.store,
        "store_file_exists": None if path is None else path.exists(),
        "strategy_from": origins.strategy,
    }


def show_config(args: argparse.Namespace) -> int:
    """``immortus config``: print the settings in force, or with ``--json`` the same as JSON."""
    settings = configuration(args)
    if args.json:
        print(json.dumps(settings))
        return EXIT_OK
    for name, text in _lines(settings):
        print(safe_text(f"{name:<19}{text}"))
    return EXIT_OK


def _lines(settings: Mapping[str, object]) -> list[tuple[str, str]]:
    exists = settings["store_file_exists"]
    store = str(settings["store"] or "none: store tracking is disabled")
    store += f"  (from {settings['store_from']}"
    store += ")" if exists is None else ", file exists)" if exists else ", no file yet)"
    strategy = settings["strategy"] or "none: each job's inline strategy, else its queue's"
    lines = [
        ("app", str(settings["app"] or "none (give --app or $IMMORTUS_APP)")),
        ("store", store),
        ("strategy", f"{strategy}  (from {settings['strategy_from']})"),
        ("secret key", "set" if settings["secret_key_set"] else "not set"),
        ("open endpoints", "yes" if settings["open_endpoints"] else "no"),
        ("outbox limit", f"{settings['outbox_limit']} events"),
    ]
    for name in _SECONDS:
        value = settings[name]
        unset = "records are kept forever" if name == "ttl" else "off"
        lines.append((name.replace("_", " "), unset if value is None else f"{value:g} s"))
    jobs = settings["jobs"]
    if not isinstance(jobs, Mapping) or not jobs:
        lines.append(("job classes", "none registered"))
        return lines
    for number, (job_class, declared) in enumerate(jobs.items()):
        notes = [f"{key} {value}" for key, value in declared.items() if value is not None]
        text = job_class + (f"  ({', '.join(notes)})" if notes else "")
        lines.append(("job classes" if number == 0 else "", text))
    return lines

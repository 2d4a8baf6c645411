"""The ``immortus group GROUP_ID`` command: a group's aggregate answer, on one line or as JSON."""

from __future__ import annotations

import argparse
import json

import immortus
from immortus.cli.codes import EXIT_NOT_OK, EXIT_OK
from immortus.cli.commands import prepare, refuse_a_missing_store_file
from immortus.groups import GroupStatus
from immortus.status import isoformat
from immortus.validation import check_group_id
from immortus.watching import one_line, safe_text

__all__ = ["describe_group", "group"]


def describe_group(answer: GroupStatus) -> str:
    """Everything ``immortus group`` shows about a group, on one line, safe for a terminal."""
    parts = [answer.group_id, answer.state.value, f"{answer.completed}/{answer.total} completed"]
    if answer.progress is not None:
        parts.append(f"{answer.progress * 100:.1f}%")
    if answer.jobs:
        parts.append(", ".join(f"{state.value} {n}" for state, n in answer.jobs.items()))
    if answer.first_error is not None:
        error = answer.first_error
        parts.append(f"first error {one_line(error.type)}: {one_line(error.message)}")
    if answer.updated_at is not None:
        parts.append(f"updated {isoformat(answer.updated_at)}")
    return safe_text("  ".join(parts))


def group(args: argparse.Namespace) -> int:
    """``immortus group GROUP_ID``: the group's answer; exit 1 when no member is recorded."""
    check_group_id(args.group_id)
    prepare(args)
    refuse_a_missing_store_file()
    answer = immortus.group_status(args.group_id)
    if args.json:
        print(json.dumps(answer.to_dict()))
    elif answer.total:
        print(describe_group(answer))
    else:
        print(safe_text(f"{answer.group_id}  unknown: no job of this group is recorded"))
    return EXIT_OK if answer.total else EXIT_NOT_OK

"""The Redis store's groups (:mod:`immortus.stores.group_counts`): one hash per group.

=============================  ===================================================================
``{prefix}group:{group_id}``   hash: each member state -> members in it, ``running`` -> the
                               running members' progress sum, ``error_type`` and
                               ``error_message`` -> the first error, ``updated_at`` -> the latest
                               member update (epoch seconds). Deleted when its last member is.
``{prefix}grouped``            hash: job id -> ``"{state} {running} {group_id}"``, what the
                               member counts for now; removed by ``prune`` with the job's index
                               entries, since Redis expires the job's own hash.
=============================  ===================================================================

A write moves its member with :data:`GROUP_SCRIPT` inside the write's ``MULTI``: the script reads
what the job counted for from ``grouped`` itself, so a record Redis expired and the next life of
the job never count twice. The keys share the store's prefix: with a hash-tag prefix
(``{immortus}:``) they fall in the store's one slot. The script declares the group it writes;
only a leftover of an expired record of another group (rare) and ``prune`` reach a group key
they built from the prefix, in the same slot.
"""

from __future__ import annotations

from typing import Any, Final

from immortus.grouping import GroupStatus
from immortus.status import JobError, JobStatus
from immortus.stores.counting import Change
from immortus.stores.group_counts import MEMBER_STATES, answer_of, running

__all__ = ["DROP_MEMBER", "GROUP_SCRIPT", "group_key", "queue", "read"]

#: Lua: take the member ``old`` (``"{state} {running} {group_id}"``) off its group, given the
#: groups' key prefix ``p``; the group's hash goes when no member is left in it.
DROP_MEMBER: Final = """
local function drop_member(p, old)
  local s1 = string.find(old, ' ', 1, true)
  local s2 = string.find(old, ' ', s1 + 1, true)
  local key = p .. string.sub(old, s2 + 1)
  if redis.call('EXISTS', key) == 0 then return end
  redis.call('HINCRBY', key, string.sub(old, 1, s1 - 1), -1)
  local r = tonumber(string.sub(old, s1 + 1, s2 - 1))
  if r ~= 0 then redis.call('HINCRBYFLOAT', key, 'running', -r) end
  local left = 0
  for _, n in ipairs(redis.call('HMGET', key, %s)) do left = left + (tonumber(n) or 0) end
  if left <= 0 then redis.call('DEL', key) end
end
""" % ", ".join(f"'{state.value}'" for state in MEMBER_STATES)  # noqa: UP031 - Lua braces

# KEYS: grouped, the job's group (grouped again when it has none). ARGV: job id, the groups' key
# prefix, what the job counts for now ('' in no group), its state, its running fraction, the
# error type and message ('' for none: kept only as the group's first), its updated_at.
GROUP_SCRIPT: Final = (
    DROP_MEMBER
    + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[3]
if old and old ~= new then
  drop_member(ARGV[2], old)
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if new == '' then return end
if old ~= new then
  redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
  if tonumber(ARGV[5]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[2], 'running', ARGV[5]) end
  redis.call('HSET', KEYS[1], ARGV[1], new)
end
if ARGV[6] ~= '' and redis.call('HSETNX', KEYS[2], 'error_type', ARGV[6]) == 1 then
  redis.call('HSET', KEYS[2], 'error_message', ARGV[7])
end
local at = tonumber(redis.call('HGET', KEYS[2], 'updated_at'))
if ARGV[8] ~= '' and (not at or at < tonumber(ARGV[8])) then
  redis.call('HSET', KEYS[2], 'updated_at', ARGV[8])
end
"""
)


def group_key(groups: str, group_id: str) -> str:
    """The key of ``group_id``'s hash, ``groups`` being the store's ``{prefix}group:``."""
    return f"{groups}{group_id}"


def queue(
    pipe: Any, groups: str, grouped: str, status: JobStatus, done: Change, *, fresh: bool
) -> None:
    """Queue, inside a write's ``MULTI``, what writing ``status`` does to its group.

    ``groups`` is the groups' key prefix (``{prefix}group:``), ``grouped`` the members' hash.
    ``fresh``: the write makes a new record (an expired one's leftover may be in a group).
    Nothing is queued for a record in no group that was in none.
    """
    group_id = status.group_id
    if group_id is None and not done.groups and not fresh:
        return
    error: JobError | None = None
    for one in done.groups:
        if one.group_id == group_id and one.error is not None:
            error = one.error
    share = running(status)
    counted = "" if group_id is None else f"{status.state.value} {share!r} {group_id}"
    updated = status.updated_at
    pipe.execute_command(  # a cluster pipeline has no eval()
        "EVAL",
        GROUP_SCRIPT,
        2,
        grouped,
        grouped if group_id is None else group_key(groups, group_id),
        status.job_id,
        groups,
        counted,
        status.state.value,
        repr(share),
        "" if error is None else error.type,
        "" if error is None else error.message,
        "" if updated is None else repr(updated.timestamp()),
    )


def read(group_id: str, fields: dict[str, str]) -> GroupStatus | None:
    """The group's answer from its hash (``None``: no member stored)."""
    return answer_of(group_id, fields) if fields else None

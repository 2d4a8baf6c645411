"""The Redis store's counters (:mod:`immortus.stores.counting`): four hashes beside its keys.

=============================  ===================================================================
``{prefix}counted``            hash: job id -> ``"{job_class} {state}"`` the job is counted under
                               (``job_class`` empty for none); removed with the job's index
                               entries by ``prune``, since Redis expires the job's own hash.
``{prefix}counts``             hash: ``"{job_class} {state}"`` -> records.
``{prefix}ended``              hash: ``"{minute} {state}"`` -> endings in that minute (epoch
                               seconds), pruned past :data:`~immortus.stores.counting.ENDED_WINDOW`.
``{prefix}durations``          hash: bucket -> ended attempts, and ``sum`` -> their seconds.
=============================  ===================================================================

Each group's counters are changed in the same ``MULTI`` (:mod:`immortus.stores.redis_groups`).

A write moves its job between ``counts`` fields with :data:`COUNT_SCRIPT`, inside the write's
``MULTI``: the script reads what the job was counted under from ``counted`` itself, so a record
Redis expired and the next life of the job never count twice. Every key of a write shares the
store's prefix: with a hash-tag prefix (``{immortus}:``, the default on Redis Cluster) they all
fall in one slot, as a cluster needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from immortus.status import JobStatus
from immortus.stores import redis_groups
from immortus.stores.counting import ENDED_WINDOW, NO_CLASS, Change, Tally, tally_of

__all__ = ["COUNT_SCRIPT", "REBUILD_SCRIPT", "CounterKeys", "counted_as", "read"]

# KEYS: counted, counts. ARGV[1]: the job id, ARGV[2]: what it is counted under now.
COUNT_SCRIPT: Final = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old ~= ARGV[2] then
  if old then redis.call('HINCRBY', KEYS[2], old, -1) end
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
"""

# KEYS: counted, counts, then the hash of each job id in ARGV. Counts each job not counted yet
# whose hash exists (a store written before the counters), atomically with its writers.
REBUILD_SCRIPT: Final = """
local added = 0
for i = 1, #ARGV do
  local key, id = KEYS[i + 2], ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 0 then
    local fields = redis.call('HMGET', key, 'job_class', 'state')
    if fields[2] then
      local counted = (fields[1] or '') .. ' ' .. fields[2]
      redis.call('HSET', KEYS[1], id, counted)
      redis.call('HINCRBY', KEYS[2], counted, 1)
      added = added + 1
    end
  end
end
return added
"""


@dataclass(frozen=True, slots=True)
class CounterKeys:
    """The counters' keys under one prefix."""

    counted: str
    counts: str
    ended: str
    durations: str
    ready: str
    #: The groups' members and the prefix of each group's key (:mod:`.redis_groups`).
    grouped: str
    groups: str

    @classmethod
    def of(cls, prefix: str) -> CounterKeys:
        """The keys under ``prefix``."""
        names = ("counted", "counts", "ended", "durations", "counted:ready", "grouped", "group:")
        return cls(*(f"{prefix}{name}" for name in names))


def counted_as(status: JobStatus) -> str:
    """The ``counts`` field of ``status``."""
    return f"{status.job_class or NO_CLASS} {status.state.value}"


def queue(
    pipe: Any, keys: CounterKeys, status: JobStatus, done: Change, *, fresh: bool = False
) -> None:
    """Queue, inside a write's ``MULTI``, what writing ``status`` does to the counters.

    And to its group (:func:`.redis_groups.queue`); ``fresh``: the write makes a new record.
    """
    # EVAL by name: a cluster's transaction pipeline has no eval() method.
    pipe.execute_command(
        "EVAL", COUNT_SCRIPT, 2, keys.counted, keys.counts, status.job_id, counted_as(status)
    )
    for minute, state in done.ended:
        pipe.hincrby(keys.ended, f"{minute} {state.value}", 1)
    for bucket, seconds in done.durations:
        pipe.hincrby(keys.durations, str(bucket), 1)
        pipe.hincrbyfloat(keys.durations, "sum", seconds)
    redis_groups.queue(pipe, keys.groups, keys.grouped, status, done, fresh=fresh)


def old_minutes(fields: list[str], now: float) -> list[str]:
    """The ``ended`` fields older than the window at ``now``."""
    oldest = now - ENDED_WINDOW
    return [name for name in fields if int(name.split(" ", 1)[0]) < oldest]


def read(
    counts: dict[str, str], ended: dict[str, str], durations: dict[str, str], since: datetime
) -> Tally:
    """The :class:`Tally` from the three hashes, ``ended`` from ``since`` on."""
    return tally_of(
        [
            (job_class, state, n)
            for name, n in counts.items()
            for job_class, _, state in [name.rpartition(" ")]
        ],
        [
            (minute, state, n)
            for name, n in ended.items()
            for minute, _, state in [name.partition(" ")]
        ],
        ((name, value) for name, value in durations.items() if name != "sum"),
        float(durations.get("sum", 0.0)),
        since=since,
    )

"""A store in Redis: shared by every process that can reach the server; Redis expires records.

Needs the ``immortus[redis]`` extra and Redis 4.0 or later (7.0 for Redis Cluster). Key layout
(``prefix`` defaults to ``immortus:``, ``{immortus}:`` on a cluster), readable with ``redis-cli``:

=============================  ===================================================================
``{prefix}job:{job_id}``       hash: the fields of :data:`immortus.stores.records.COLUMNS`, absent
                               when empty; times are UTC epoch seconds. ``PEXPIRE`` = the TTL,
                               reset by every write (no expiry when ``ttl=None``). Its
                               ``history`` field is the job's history (JSON), read only by
                               :meth:`RedisStore.history`; ``cancel_requested_at`` marks a
                               cancel request.
``{prefix}jobs``               sorted set: every job id, scored by ``created`` (listing order).
``{prefix}state:{state}``      sorted set: the ids of the jobs in that state, scored the same way.
``{prefix}seq``                counter: how many record writes the store has made (change numbers).
``{prefix}changes``            sorted set: every job id, scored by the change number of its last
                               write (:meth:`RedisStore.changes_since`).
``{prefix}acked``              counter: written just before each ``WAIT`` (only with ``replicas``).
``{prefix}counted`` and        hashes: the dashboard's counters, changed in every write's
``counts``, ``ended``,         ``MULTI`` (:mod:`immortus.stores.redis_counts`).
``durations``
=============================  ===================================================================

Inspect a job with ``HGETALL immortus:job:<id>`` and its expiry with ``PTTL``; list the newest
failures with ``ZREVRANGE immortus:state:failed 0 9``. A write updates the hash and moves the
id between the state sets in one ``MULTI``. When Redis expires a hash, its id stays in the sorted
sets until :meth:`RedisStore.prune` (or a listing that meets it) removes it; listings skip it.

:meth:`RedisStore.record` is an optimistic transaction: ``WATCH`` the hash, read it, apply the
event with :func:`immortus.transitions.apply` in Python, write in ``MULTI``/``EXEC``, and start
again if another client wrote the job meanwhile. The ``MULTI`` also runs a tiny script that
increments ``{prefix}seq`` and scores the job with the new number in ``{prefix}changes``: a
script runs atomically inside ``EXEC``, so a reader of the changes set sees a write exactly when
it can read it, and numbers follow commit order. Heartbeats are not counted (a lease is not a
status); :meth:`RedisStore.prune` removes pruned ids from the changes set, and a hash Redis
expired stays there until then. Four small Lua scripts read the index, delete
what has expired and extend running jobs' leases (:meth:`RedisStore.beat`: one call for all of a
worker's jobs); they never decide a transition. A job whose lease ran out stays in the
``started`` set until :meth:`RedisStore.reap_lost` or a later event moves it, so a listing of
``lost`` jobs walks the ``lost`` and the ``started`` sets together.

On Redis Cluster (``redis+cluster://``, or a ``RedisCluster`` client) the code is the same: a
write's transaction and scripts touch only keys of the store's prefix, which must hold a hash
tag (default ``{immortus}:``), so they all fall in one slot. The transaction pipeline is asked
for explicitly and scripts queued in it are sent as ``EVAL`` (a cluster pipeline has no
``eval()``). With ``replicas``, every write is followed by ``INCR {prefix}acked`` and ``WAIT``
on one connection to the slot's primary (:meth:`RedisStore._await_replicas`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final, Protocol, Self, TypeVar, cast

from immortus.exceptions import (
    ConfigurationError,
    CorruptRecord,
    InvalidStoreURL,
    MissingDependency,
    StoreUnavailable,
)
from immortus.grouping import GroupStatus
from immortus.status import HistoryEntry, JobStatus, State
from immortus.stores import notify, notify_redis, records, redis_counts, redis_groups
from immortus.stores.base import (
    DEFAULT_TTL,
    MAX_CHANGES,
    Changes,
    Cursor,
    JobPage,
    Store,
    check_beat,
    check_page_size,
    lower_scheme,
)
from immortus.stores.counting import Tally, change
from immortus.stores.urls import redact_url, take_options
from immortus.strategy import ChangeSource
from immortus.transitions import Event
from immortus.validation import check_group_id, check_job_id

try:
    import redis
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.cluster import RedisCluster
    from redis.exceptions import RedisClusterException, RedisError, WatchError
    from redis.retry import Retry
except ImportError as exc:
    raise MissingDependency("redis", "redis") from exc

__all__ = ["RedisStore"]

_T = TypeVar("_T")

#: The jitter of write retries: a generator of its own, so that the application's global
#: ``random`` state is never drawn from by store traffic. It protects nothing secret.
_JITTER: Final = random.Random()  # noqa: S311
#: How often record() starts again when other clients keep writing the same job.
_MAX_TRIES: Final = 50
#: How long a write waits for its replicas (``replicas=``) before it is not acknowledged.
_REPLICA_WAIT_MS: Final = 1000
#: How many index members prune() checks per script call.
_PRUNE_BATCH: Final = 500
#: What the driver raises when Redis fails a call, or a record is not text (see _guard).
_DRIVER_ERRORS: Final = (RedisError, RedisClusterException, UnicodeDecodeError)
#: The fields a status read asks for, encoded once (redis-py passes bytes through as they are).
_READ: Final = tuple(name.encode() for name in records.READ_COLUMNS)

# Up to ARGV[3] index members strictly after the cursor (ARGV[1] = created, ARGV[2] = job id),
# newest first. Equal scores come in descending member order, so the cursor's own rank gives the
# exact offset inside its score; when the cursor's member is gone the caller filters instead.
_PAGE_SCRIPT: Final = """
local offset = 0
if ARGV[2] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if score and tonumber(score) == tonumber(ARGV[1]) then
    offset = redis.call('ZREVRANK', KEYS[1], ARGV[2]) + 1
      - redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
  end
end
return redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES',
                  'LIMIT', offset, ARGV[3])
"""

# KEYS: the jobs index, the counters' counted and counts hashes, the groups' members hash, the
# ARGV[1] other indexes (states, changes), then the hash of each job id in ARGV[4..]; ARGV[3]:
# the groups' key prefix.
# Drops a job from every index, the counters and its group when its hash is gone; with ARGV[2]
# (now) it first deletes a hash whose expires field is at or before now. Checked here,
# atomically, so a job re-created since the caller looked is left alone. Returns how many
# records were removed.
_REMOVE_SCRIPT: Final = (
    redis_groups.DROP_MEMBER
    + """
local states, now, removed = tonumber(ARGV[1]), tonumber(ARGV[2]), 0
for i = 4, #ARGV do
  local key, id = KEYS[states + i + 1], ARGV[i]
  local expires = tonumber(redis.pcall('HGET', key, 'expires'))  -- nil unless a hash has it
  local deleted = now and expires and expires <= now and redis.call('DEL', key) == 1
  if deleted or redis.call('EXISTS', key) == 0 then
    local indexed = redis.call('ZREM', KEYS[1], id)
    for k = 5, states + 4 do redis.call('ZREM', KEYS[k], id) end
    local counted = redis.call('HGET', KEYS[2], id)
    if counted then
      redis.call('HINCRBY', KEYS[3], counted, -1)
      redis.call('HDEL', KEYS[2], id)
    end
    local member = redis.call('HGET', KEYS[4], id)
    if member then
      drop_member(ARGV[3], member)
      redis.call('HDEL', KEYS[4], id)
    end
    if deleted or indexed == 1 then removed = removed + 1 end
  end
end
return removed
"""
)


# KEYS: the job hashes. ARGV[1] = alive_until, ARGV[2] = expires and ARGV[3] = its PEXPIRE in
# milliseconds (both '' without a TTL). Extends only existing hashes in state started, so an
# ended, expired or pruned job is never touched nor re-created. Returns how many it extended.
# KEYS: the change counter and the changes set; ARGV[1]: the job id written, ARGV[2]: the
# channel. Run inside the write's MULTI, so the change is numbered atomically with the write
# itself, and its number is published (immortus.stores.notify_redis) once it can be read.
_MARK_SCRIPT: Final = """
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('PUBLISH', ARGV[2], seq)
"""

# KEYS: the change counter and the changes set; ARGV[1]: the cursor, ARGV[2]: the most ids.
# Returns the counter and up to ARGV[2] ids scored after the cursor, oldest change first.
_CHANGES_SCRIPT: Final = """
local top = tonumber(redis.call('GET', KEYS[1]) or '0')
return {top, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])}
"""

_BEAT_SCRIPT: Final = """
local touched = 0
local reaped = {}
for i = 1, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state == 'lost' and redis.call('HGET', KEYS[i], 'error_type') == ARGV[4] then
    reaped[#reaped + 1] = i - 1
  end
  if state == 'started' then
    redis.call('HSET', KEYS[i], 'alive_until', ARGV[1])
    if ARGV[3] == '' then
      redis.call('HDEL', KEYS[i], 'expires')
      redis.call('PERSIST', KEYS[i])
    else
      redis.call('HSET', KEYS[i], 'expires', ARGV[2])
      redis.call('PEXPIRE', KEYS[i], ARGV[3])
    end
    touched = touched + 1
  end
end
return {touched, reaped}
"""

#: The outcome of an atomic change, from the job's stored record, its lease and the time.
_Decide = Callable[[JobStatus | None, float | None, float], records.Outcome | None]


class _Watching(Protocol):  # the part of redis.client.Pipeline that redis-py leaves untyped
    def watch(self, *names: str) -> bool: ...


class RedisStore(Store):
    """Keeps one hash per job plus sorted-set indexes; see the module docstring for the layout.

    ``client_or_url`` is a ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://`` URL
    (the store then owns the client and closes it), or a ``redis.Redis`` or
    ``redis.cluster.RedisCluster`` made with ``decode_responses=True`` (left open by
    :meth:`close`). ``prefix`` starts every key, so several stores can share one database; it
    defaults to ``immortus:``, and to ``{immortus}:`` on a cluster, where it must hold a hash tag
    (see the module docstring). With ``replicas``, a write returns only once that many replicas
    hold it (``WAIT``), and raises :class:`StoreUnavailable` when they do not within a second.

    Raises:
        InvalidStoreURL: the URL is malformed, or a cluster's prefix has no hash tag.
        ConfigurationError: the client does not decode responses, or a given cluster client's
            prefix has no hash tag.
        InvalidInput: ``ttl`` is not positive.
        StoreUnavailable: no node of a ``redis+cluster://`` URL answers (a cluster client asks
            for the cluster's layout when it is made).
    """

    supports_heartbeat: ClassVar[bool] = True
    tracks_changes: ClassVar[bool] = True
    keeps_history: ClassVar[bool] = True
    supports_counts: ClassVar[bool] = True
    supports_groups: ClassVar[bool] = True

    def __init__(
        self,
        client_or_url: redis.Redis | RedisCluster | str,
        *,
        ttl: float | timedelta | None = DEFAULT_TTL,
        prefix: str | None = None,
        replicas: int = 0,
    ) -> None:
        super().__init__(ttl=ttl)
        self._owns_client = isinstance(client_or_url, str)
        if isinstance(client_or_url, str):
            client_or_url = _connect(client_or_url)
        self._client = cast(redis.Redis, client_or_url)  # a RedisCluster has the same commands
        self._cluster = isinstance(client_or_url, RedisCluster)
        settings: dict[str, Any] = self._client.get_connection_kwargs()
        if not settings.get("decode_responses"):
            self.close()
            raise ConfigurationError("the redis client must be made with decode_responses=True")
        prefix = ("{immortus}:" if self._cluster else "immortus:") if prefix is None else prefix
        if self._cluster and not _hash_tagged(prefix):
            self.close()
            error = InvalidStoreURL if self._owns_client else ConfigurationError
            raise error(
                f"the key prefix {prefix!r} has no hash tag: on Redis Cluster every key of a "
                "store must fall in one slot, so the prefix needs one, e.g. '{immortus}:' "
                "(a store per tag spreads several stores over the cluster)"
            )
        if replicas < 0:
            self.close()
            raise ConfigurationError(f"replicas must be 0 or more, not {replicas}")
        self.replicas = replicas
        self._password: str | None = settings.get("password")
        if self._cluster:
            node = cast(RedisCluster, client_or_url).get_default_node()  # type: ignore[no-untyped-call]
            self._where = str(node.name)
        else:
            host = f"{settings.get('host', 'localhost')}:{settings.get('port', 6379)}"
            self._where = f"unix:{settings['path']}" if "path" in settings else host
        self._db = settings.get("db", 0)
        self.prefix = prefix
        self._jobs_key = f"{prefix}jobs"
        self._state_keys = [self._state_key(state) for state in State]
        self._change_keys = [f"{prefix}seq", f"{prefix}changes"]
        self._acked_key = f"{prefix}acked"  # written before each WAIT (replicas=)
        #: The pub/sub channel every record write publishes its change number on.
        self.change_channel = f"{prefix}changes"
        self._counter_keys = redis_counts.CounterKeys.of(prefix)
        self._counted_ready = False
        self._rebuild = self._client.register_script(redis_counts.REBUILD_SCRIPT)
        self._page = self._client.register_script(_PAGE_SCRIPT)
        self._remove = self._client.register_script(_REMOVE_SCRIPT)
        self._beat = self._client.register_script(_BEAT_SCRIPT)
        self._changes = self._client.register_script(_CHANGES_SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, ttl: float | timedelta | None = DEFAULT_TTL) -> Self:
        """Open the store at a ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://`` URL.

        The query may set the store's ``prefix`` and ``replicas`` (``?prefix=app:&replicas=1``).
        A server's connection is made by the first operation; a cluster's client asks a node for
        the cluster's layout here.

        Raises:
            InvalidStoreURL: the URL or one of its options is malformed.
            StoreUnavailable: no node of a cluster URL answers.
        """
        rest, options = take_options(url, ("prefix", "replicas"))
        try:
            replicas = int(options.get("replicas", "0"))
        except ValueError:
            replicas = -1
        if replicas < 0:
            shown = redact_url(url)
            raise InvalidStoreURL(f"replicas in {shown!r} must be a whole number, 0 or more")
        return cls(rest, ttl=ttl, prefix=options.get("prefix"), replicas=replicas)

    @property
    def location(self) -> str:
        """The server, database and key prefix (no password); see :attr:`Store.location`."""
        if self._cluster:
            return f"redis+cluster:{self._where} {self.prefix}"
        return f"redis:{self._where}/{self._db} {self.prefix}"

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _state_key(self, state: State) -> str:
        return f"{self.prefix}state:{state.value}"

    def record(self, event: Event) -> JobStatus | None:
        """Apply ``event`` in a WATCH/MULTI transaction; see :meth:`Store.record`.

        Raises:
            StoreUnavailable: Redis cannot be reached, or the job was written by other clients
                throughout every one of the tries; nothing was written.
            CorruptRecord: the job's stored record cannot be decoded.
        """
        return self._change(
            event.job_id, lambda current, lease, now: records.advance(current, lease, event, now)
        )

    def _change(self, job_id: str, decide: _Decide) -> JobStatus | None:
        """Apply ``decide`` to the job atomically; return the new status (``None``: unchanged).

        Raises:
            StoreUnavailable: Redis cannot be reached, or other clients wrote the job throughout
                every try.
        """
        return self._optimistic(job_id, lambda pipe: self._change_once(pipe, job_id, decide))

    def _optimistic(self, job_id: str, once: Callable[[redis.client.Pipeline], _T]) -> _T:
        """Run ``once`` (a WATCH/MULTI transaction on the job) until no other client interferes.

        Raises:
            StoreUnavailable: Redis cannot be reached, or other clients wrote the job throughout
                every try.
        """
        with self._guard():
            for attempt in range(_MAX_TRIES):
                try:
                    with self._client.pipeline(transaction=True) as pipe:
                        done = once(pipe)
                except WatchError:  # another client wrote the job meanwhile: try again
                    # Jitter spreads out clients that collided; it protects nothing secret.
                    time.sleep(_JITTER.uniform(0, min(0.02, 0.0005 * 2**attempt)))
                    continue
                if self.replicas:
                    self._await_replicas()
                return done
        raise StoreUnavailable(
            f"job {job_id!r} on redis at {self._where} is written by other clients too "
            f"often: gave up after {_MAX_TRIES} tries"
        )

    def _change_once(
        self, pipe: redis.client.Pipeline, job_id: str, decide: _Decide
    ) -> JobStatus | None:
        """Read, decide and write once; raises ``WatchError`` when the job changed meanwhile."""
        key = self._job_key(job_id)
        cast(_Watching, pipe).watch(key)
        row = cast(dict[str, str], pipe.hgetall(key))
        current = records.decode(row) if row else None
        now = time.time()
        outcome = decide(current, records.lease_of(row) if row else None, now)
        if outcome is None:
            return None
        status = outcome.status
        created = now if current is None else _created(row)
        expires = self.expires_at(now)
        fields = records.encode(
            status,
            created=created,
            expires=expires,
            alive_until=outcome.alive_until,
            kept=row or None,
            entries=outcome.entries,
        )
        emptied = [name for name, value in fields.items() if value is None and name in row]
        pipe.multi()
        pipe.hset(key, mapping={name: value for name, value in fields.items() if value is not None})
        if emptied:
            pipe.hdel(key, *emptied)
        if expires is None:
            pipe.persist(key)
        else:  # relative, so the Redis server's clock need not agree with ours
            pipe.pexpire(key, max(1, math.ceil((expires - now) * 1000)))
        pipe.zadd(self._jobs_key, {job_id: created})
        pipe.zadd(self._state_key(status.state), {job_id: created})
        # A new record (perhaps the next life of an expired one) leaves no id in other states.
        stale = State if current is None else [current.state]
        for state in stale:
            if state is not status.state:
                pipe.zrem(self._state_key(state), job_id)
        pipe.execute_command(  # type: ignore[no-untyped-call]  # a cluster pipe has no eval()
            "EVAL", _MARK_SCRIPT, 2, *self._change_keys, job_id, self.change_channel
        )
        if status is not current:
            done = change(current, status)
            redis_counts.queue(pipe, self._counter_keys, status, done, fresh=current is None)
        pipe.execute()
        return None if status is current else status  # else: a lease only

    def get(self, job_id: str) -> JobStatus | None:
        """Return the job's status; see :meth:`Store.get`."""
        check_job_id(job_id)
        try:  # what _guard does, inline: a context manager costs µs a call
            values = cast(list[str | None], self._client.hmget(self._job_key(job_id), _READ))
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc
        if values.count(None) == len(values):  # no hash
            return None
        return records.decode_read(values, time.time())

    def history(self, job_id: str) -> tuple[HistoryEntry, ...]:
        """Return the job's history (one ``HGETALL``), oldest first; see :meth:`Store.history`."""
        check_job_id(job_id)
        with self._guard():
            row = cast(dict[str, str], self._client.hgetall(self._job_key(job_id)))
        return records.history_of(row, time.time()) if row else ()

    def request_cancel(self, job_id: str) -> bool:
        """Record a cancel request on the job's live, unended hash (WATCH/MULTI).

        See :class:`~immortus.cancel_requests.CancelRequestStore`. A request is not a change
        of status: it does not count in :meth:`changes_since`, and it leaves the expiry alone.
        """
        check_job_id(job_id)
        key = self._job_key(job_id)

        def once(pipe: redis.client.Pipeline) -> bool:
            cast(_Watching, pipe).watch(key)
            row = cast(dict[str, str], pipe.hgetall(key))
            now = time.time()
            seen = records.decode(row, now=now) if row else None
            fields = records.cancel_request(row or None, seen, now)
            if fields:
                pipe.multi()
                pipe.hset(key, mapping={name: value for name, value in fields.items()})  # noqa: C416 - typed by hset
                pipe.execute()
            return fields is not None

        return self._optimistic(job_id, once)

    def cancel_requested(self, job_id: str) -> bool:
        """Tell whether the job's hash carries a cancel request (one ``HEXISTS``)."""
        check_job_id(job_id)
        with self._guard():
            return bool(self._client.hexists(self._job_key(job_id), "cancel_requested_at"))

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the known statuses among ``job_ids`` in one round trip; see ``Store.get_many``."""
        unique = list(dict.fromkeys(check_job_id(job_id) for job_id in job_ids))
        if not unique:
            return {}
        rows = self._fetch(unique)
        now = time.time()
        return {
            job_id: records.decode(row, now=now)
            for job_id, row in zip(unique, rows, strict=True)
            if row
        }

    def _fetch(self, job_ids: Sequence[str]) -> list[dict[str, str]]:
        """Read every job's status fields in one pipeline (empty dicts for absent jobs).

        ``HMGET`` of :data:`~immortus.stores.records.READ_COLUMNS`: never the history.
        """
        with self._guard(), self._client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self._job_key(job_id), records.READ_COLUMNS)
            return [_row(values) for values in cast(list[list[str | None]], pipe.execute())]

    def list_jobs(
        self, *, state: State | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Return recent jobs, newest first, from a sorted-set index; see :meth:`Store.list_jobs`.

        Index members whose hash Redis has expired are skipped (and dropped from the index), and
        more members are read until the page is full or the index ends. ``lost`` walks the
        ``lost`` and ``started`` sets together (a started job whose lease ran out reads lost);
        ``started`` skips those.
        """
        check_page_size(limit)
        position = None if cursor is None else Cursor.decode(cursor)
        wanted_state = None if state is None else State.parse(state)
        indexes = self._indexes(wanted_state)
        found: list[tuple[Cursor, JobStatus]] = []
        while len(found) <= limit:
            wanted = limit + 1 - len(found)
            fresh, frontier = self._merged_after(indexes, position, wanted)
            rows = self._fetch([entry.job_id for entry in fresh]) if fresh else []
            now = time.time()
            expired = []
            for entry, row in zip(fresh, rows, strict=True):
                if not row:
                    expired.append(entry.job_id)
                elif wanted_state in (None, (status := records.decode(row, now=now)).state):
                    found.append((entry, status))
            if expired:
                self._drop(expired, now=None)
            if frontier is None:
                break
            position = frontier
        jobs = tuple(status for _, status in found[:limit])
        next_cursor = found[limit - 1][0].encode() if len(found) > limit else None
        return JobPage(jobs, next_cursor)

    def _indexes(self, state: State | None) -> list[str]:
        """The sorted sets that hold the jobs that may read as ``state``."""
        if state is None:
            return [self._jobs_key]
        if state is State.LOST:  # a started job whose lease ran out reads lost
            return [self._state_key(State.LOST), self._state_key(State.STARTED)]
        return [self._state_key(state)]

    def _merged_after(
        self, indexes: Sequence[str], position: Cursor | None, count: int
    ) -> tuple[list[Cursor], Cursor | None]:
        """Read up to ``count`` entries of each index after ``position``, merged newest first.

        Returns the entries every index has been read down to, and the position to read on
        from (``None``: every index ended). One index is the plain case; with several, entries
        past the highest last entry of an index that did not end are left for the next read.
        """
        merged: dict[str, Cursor] = {}
        frontier: Cursor | None = None
        for index in indexes:
            fresh, more = self._fresh_after(index, position, count)
            merged.update((entry.job_id, entry) for entry in fresh)
            if more and (frontier is None or _follows(frontier, fresh[-1])):
                frontier = fresh[-1]
        ordered = sorted(merged.values(), key=lambda e: (e.created, e.job_id), reverse=True)
        if frontier is not None:
            ordered = [entry for entry in ordered if not _follows(entry, frontier)]
        return ordered, frontier

    def _fresh_after(
        self, index: str, position: Cursor | None, count: int
    ) -> tuple[list[Cursor], bool]:
        """Read entries of ``index`` strictly after ``position``; tell whether more follow.

        Entries at or before the cursor come back when its own member is not in ``index``
        (gone, or from another index of a merged listing) and others share its ``created``;
        they are skipped, reading further until an entry after the cursor or the end.
        """
        wanted = count
        while True:
            entries = self._index_after(index, position, wanted)
            fresh = [entry for entry in entries if position is None or _follows(entry, position)]
            more = len(entries) == wanted
            if fresh or not more:
                return fresh, more
            wanted *= 2

    def _index_after(self, index: str, position: Cursor | None, count: int) -> list[Cursor]:
        """Read up to ``count`` entries of ``index`` from ``position`` on (fewer: it ended)."""
        created = "+inf" if position is None else repr(position.created)
        job_id = "" if position is None else position.job_id
        with self._guard():
            raw = cast(list[str], self._page(keys=[index], args=[created, job_id, count]))
        pairs = zip(raw[::2], raw[1::2], strict=True)
        return [Cursor(float(score), member) for member, score in pairs]

    def change_source(self) -> ChangeSource:
        """Return the store's changes, pushed at each write (:mod:`immortus.stores.notify_redis`).

        Its watches share one pub/sub connection per store and process, opened by the first.
        """

        def make(store: Store) -> notify_redis.RedisSource:
            listener = notify_redis.RedisListener(self._client, self.change_channel, self.location)
            return notify_redis.RedisSource(store, listener)

        return notify.shared(self, make)

    def changes_since(self, cursor: int | None) -> Changes:
        """Name the jobs written after ``cursor`` with one script call; see ``Store.changes_since``.

        A cursor above the counter (the database was flushed, or restarted without its data)
        answers ``None``.
        """
        after = 0 if cursor is None else cursor
        with self._guard():
            answer = self._changes(keys=self._change_keys, args=[after, MAX_CHANGES + 1])
        top, changed = int(answer[0]), cast(list[str], answer[1])
        if cursor is None:
            return top, frozenset()
        if cursor > top or len(changed) > MAX_CHANGES:
            return top, None
        return top, frozenset(changed)

    def prune(self, *, now: datetime | None = None) -> int:
        """Drop index entries of records Redis expired; see :meth:`Store.prune`.

        Redis deletes expired hashes by itself; with ``now`` in the future this also deletes the
        hashes whose ``expires`` field is at or before ``now``. Each deletion rechecks the
        record atomically, so a job recorded meanwhile is kept.
        """
        moment = None if now is None else now.timestamp()
        removed = 0
        batch: list[str] = []
        with self._guard():
            for member, _ in self._client.zscan_iter(self._jobs_key, count=_PRUNE_BATCH):
                batch.append(member)
                if len(batch) == _PRUNE_BATCH:
                    removed += self._drop(batch, now=moment)
                    batch = []
            if batch:
                removed += self._drop(batch, now=moment)
            ended = self._counter_keys.ended
            fields = cast(list[str], self._client.hkeys(ended))
            old = redis_counts.old_minutes(fields, time.time())
            if old:
                self._client.hdel(ended, *old)
        return removed

    def group(self, group_id: str) -> GroupStatus | None:
        """Return the group's answer from its one hash; see :meth:`Store.group`."""
        check_group_id(group_id)
        key = redis_groups.group_key(self._counter_keys.groups, group_id)
        with self._guard():
            fields = cast(dict[str, str], self._client.hgetall(key))
        return redis_groups.read(group_id, fields)

    def tally(self, *, since: datetime) -> Tally:
        """Return the counters, ``ended`` from ``since`` on; see :mod:`immortus.stores.counting`.

        Three hash reads in one ``MULTI``. The first call on a store written before the
        counters existed counts its jobs once (their endings and durations start empty).
        """
        keys = self._counter_keys
        with self._guard():
            if not self._counted_ready:
                self._rebuild_counters()
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys.counts)
                pipe.hgetall(keys.ended)
                pipe.hgetall(keys.durations)
                counts, ended, durations = pipe.execute()
        return redis_counts.read(counts, ended, durations, since)

    def _rebuild_counters(self) -> None:
        """Count the jobs no write has counted yet (a store from before the counters), once."""
        keys = self._counter_keys
        if not self._client.exists(keys.ready):
            batch: list[str] = []
            for member, _ in self._client.zscan_iter(self._jobs_key, count=_PRUNE_BATCH):
                batch.append(member)
                if len(batch) == _PRUNE_BATCH:
                    self._count_batch(batch)
                    batch = []
            if batch:
                self._count_batch(batch)
            self._client.set(keys.ready, "1")
        self._counted_ready = True

    def _count_batch(self, job_ids: list[str]) -> None:
        keys = [self._counter_keys.counted, self._counter_keys.counts]
        self._rebuild(keys=[*keys, *map(self._job_key, job_ids)], args=job_ids)

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> int:
        """Extend the running jobs' leases with one script call; see :meth:`Store.beat`."""
        ids, lease = check_beat(job_ids, alive_until)
        if not ids:
            return 0
        now = time.time()
        expires = self.expires_at(now)
        args: list[str] = [repr(lease), "", "", records.LOST_ERROR_TYPE]
        if expires is not None:  # relative, as record() sets it
            args[1:3] = [repr(expires), str(max(1, math.ceil((expires - now) * 1000)))]

        def decide(
            current: JobStatus | None, _lease: float | None, now: float
        ) -> records.Outcome | None:
            return None if current is None else records.revive(current, lease, now)

        with self._guard():
            touched, reaped = self._beat(keys=[self._job_key(job_id) for job_id in ids], args=args)
            # Reaped lost by its lease (rare: after an outage): revived atomically, one by one.
            revived = sum(self._change(ids[int(index)], decide) is not None for index in reaped)
        return int(touched) + revived

    def reap_lost(self, *, now: datetime | None = None) -> int:
        """Record ``lost`` for running jobs whose lease ran out; see :meth:`Store.reap_lost`.

        Walks the ``started`` set; each candidate is rechecked and rewritten in its own
        ``WATCH``/``MULTI`` transaction, so a heartbeat landing meanwhile is seen and no other
        reaper counts the same job.
        """
        moment = time.time() if now is None else now.timestamp()

        def decide(
            current: JobStatus | None, lease: float | None, _: float
        ) -> records.Outcome | None:
            return None if current is None else records.reap(current, lease, moment)

        reaped = 0
        batch: list[str] = []
        with self._guard():
            running = self._client.zscan_iter(self._state_key(State.STARTED), count=_PRUNE_BATCH)
            for member, _ in running:
                batch.append(member)
                if len(batch) == _PRUNE_BATCH:
                    reaped += self._reap(batch, moment, decide)
                    batch = []
            if batch:
                reaped += self._reap(batch, moment, decide)
        return reaped

    def _reap(self, job_ids: list[str], moment: float, decide: _Decide) -> int:
        """Reap the jobs among ``job_ids`` whose lease ran out at ``moment``; return how many."""
        reaped = 0
        for job_id, row in zip(job_ids, self._fetch(job_ids), strict=True):
            lease = records.lease_of(row) if row else None
            if lease is not None and lease <= moment and row.get("state") == State.STARTED.value:
                reaped += self._change(job_id, decide) is not None
        return reaped

    def _drop(self, job_ids: Sequence[str], *, now: float | None) -> int:
        """Run the removal script over ``job_ids``; return how many records it removed."""
        indexes = [*self._state_keys, self._change_keys[1]]  # the changes set goes with them
        counted = self._counter_keys
        counters = [counted.counted, counted.counts, counted.grouped]
        keys = [self._jobs_key, *counters, *indexes, *map(self._job_key, job_ids)]
        args: list[str | int] = [len(indexes), "" if now is None else repr(now), counted.groups]
        args.extend(job_ids)
        with self._guard():
            return int(self._remove(keys=keys, args=args))

    def _await_replicas(self) -> None:
        """Return once :attr:`replicas` replicas hold every write this store has made (``WAIT``).

        ``WAIT`` counts only what its own connection wrote, so a tiny write to
        ``{prefix}acked`` goes first, on the same connection to the primary of the store's
        slot: replication keeps one order, so the replicas then hold the record before it too.

        Raises:
            StoreUnavailable: fewer replicas acknowledged within the wait; the write is on the
                primary but a failover may lose it, so the caller should send it again.
        """
        node = self._client
        if self._cluster:
            cluster = cast(RedisCluster, self._client)
            primary = cluster.get_node_from_key(self._acked_key)  # type: ignore[no-untyped-call]
            node = cluster.get_redis_connection(primary)
        with node.pipeline(transaction=False) as pipe:
            pipe.incr(self._acked_key)
            pipe.wait(self.replicas, _REPLICA_WAIT_MS)
            acknowledged = int(pipe.execute()[1])
        if acknowledged < self.replicas:
            raise StoreUnavailable(
                f"redis at {self._where}: {acknowledged} of {self.replicas} replicas "
                f"acknowledged the write within {_REPLICA_WAIT_MS} ms"
            )

    def close(self) -> None:
        """Close the connection pool if the store made the client from a URL."""
        if self._owns_client:
            self._client.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Translate driver errors into :class:`StoreUnavailable` and :class:`CorruptRecord`."""
        try:
            yield
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc

    def _translated(self, exc: Exception) -> CorruptRecord | StoreUnavailable:
        """The error to raise for a driver error (chain it: ``raise ... from exc``).

        A cluster client relearns the cluster's layout first (:meth:`_relearn_layout`).
        """
        detail = f"{type(exc).__name__}: {exc}"
        if self._password:
            detail = detail.replace(self._password, "***")
        if isinstance(exc, UnicodeDecodeError) or detail.startswith("ResponseError: WRONGTYPE"):
            return CorruptRecord(f"a record under {self.prefix!r} at {self._where}: {detail}")
        if self._cluster:
            self._relearn_layout()
        return StoreUnavailable(f"redis at {self._where} is unavailable: {detail}")

    def _relearn_layout(self) -> None:
        """Ask the cluster again which node serves which slot, after a node failed us.

        A cluster client relearns by itself on plain commands, but not when a transaction
        failed (after a failover, the next one would go to the dead primary again).
        """
        with suppress(RedisError, RedisClusterException):  # no node answers: next time
            cast(RedisCluster, self._client).nodes_manager.initialize()


def _connect(url: str) -> redis.Redis | RedisCluster:
    """Make a client for ``url`` that fails within seconds when Redis is away (no I/O yet).

    A ``redis+cluster://`` client asks a node for the cluster's layout at once.
    """
    retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1)
    url = lower_scheme(url)
    if url.partition("://")[0].endswith("+cluster"):
        return _connect_cluster(url, retry)
    client = None
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=30,
            retry=retry,
            decode_responses=True,
        )
        pool = client.connection_pool
        pool.connection_class(**pool.connection_kwargs)  # refuses unknown options; no I/O
    except (ValueError, TypeError) as exc:
        if client is not None:
            client.close()
        shown = redact_url(url)
        detail = str(exc).replace(url, shown)
        raise InvalidStoreURL(f"malformed store URL {shown!r}: {detail}") from exc
    return client


def _connect_cluster(url: str, retry: Retry) -> RedisCluster:
    """Make a cluster client for a ``redis+cluster://`` or ``rediss+cluster://`` URL.

    Raises:
        InvalidStoreURL: the URL is malformed, names a database other than 0 or a socket.
        StoreUnavailable: no node answers.
    """
    scheme, _, rest = url.partition("://")
    plain = f"{scheme.removesuffix('+cluster')}://{rest}"
    shown = redact_url(url)
    if not plain.startswith(("redis://", "rediss://")):
        raise InvalidStoreURL(f"{shown!r}: a cluster URL is redis+cluster:// or rediss+cluster://")
    try:
        database = redis.connection.parse_url(plain).get("db", 0)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise InvalidStoreURL(f"malformed store URL {shown!r}: {exc}") from exc
    if database != 0:
        raise InvalidStoreURL(f"{shown!r}: Redis Cluster has database 0 only")
    try:
        return RedisCluster.from_url(
            plain,
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=30,
            retry=retry,
            decode_responses=True,
        )
    except (ValueError, TypeError) as exc:
        detail = str(exc).replace(plain, shown)
        raise InvalidStoreURL(f"malformed store URL {shown!r}: {detail}") from exc
    except (RedisError, RedisClusterException) as exc:
        detail = f"{type(exc).__name__}: {exc}".replace(plain, shown)
        raise StoreUnavailable(f"no node of the Redis Cluster {shown!r} answers: {detail}") from exc


def _hash_tagged(prefix: str) -> bool:
    """Whether ``prefix`` holds a Redis Cluster hash tag (``{…}``, not empty), closed in it."""
    start = prefix.find("{")
    return start >= 0 and prefix.find("}", start + 1) > start + 1


def _follows(entry: Cursor, position: Cursor) -> bool:
    """Whether ``entry`` is listed after ``position`` (str order is Redis's member order)."""
    return (entry.created, entry.job_id) < (position.created, position.job_id)


def _row(values: list[str | None]) -> dict[str, str]:
    """The fields of an ``HMGET`` of ``READ_COLUMNS`` that the hash has (empty: no hash)."""
    return {
        name: value
        for name, value in zip(records.READ_COLUMNS, values, strict=True)
        if value is not None
    }


def _created(row: dict[str, str]) -> float:
    """Return a stored record's ``created`` time."""
    try:
        return float(row["created"])
    except (KeyError, ValueError) as exc:
        raise CorruptRecord(f"the record of job {row.get('job_id')!r} has no created time") from exc

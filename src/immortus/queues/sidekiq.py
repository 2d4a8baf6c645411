"""Track Sidekiq jobs (ActiveJob's ``sidekiq`` adapter) from Python, by reading Sidekiq's Redis.

Sidekiq keeps no per-job status, so :class:`SidekiqStrategy` infers one from where the job's
payload sits (Sidekiq 6 and 7 layouts, optional ``redis-namespace`` prefix):

=============================  ============  ===================================================
where the payload is           state         notes
=============================  ============  ===================================================
``<identity>:workers`` hash    ``started``   a live process is running it (``:work`` in
(``:work`` in Sidekiq 7)                     Sidekiq 7); written by the process's heartbeat
``retry`` zset                 ``retrying``  ``error`` from ``error_class``/``error_message``
``dead`` zset                  ``failed``    retries exhausted
``schedule`` zset              ``created``   ``retrying`` when ActiveJob's ``retry_on`` put it
                                             back (``executions`` > 0)
``queue:<name>`` list          ``created``   ``retrying`` when it has failed before
nowhere                        ``finished``  an inference: ``certain=False`` (see below)
=============================  ============  ===================================================

A job is found by its ActiveJob ``job_id`` (``args[0].job_id``) or its Sidekiq ``jid``. Both are
compared exactly; an id that cannot be either (not a UUID, not 24 hex digits) is ``unknown``
without asking Redis, unless ``id_pattern=None``.

**"Finished" is an inference.** Sidekiq deletes a job that ends well, so a finished job looks
like one that never existed: those statuses carry ``certain=False``. Sidekiq 6.4 also writes a
running job to its process's work hash only at the next heartbeat (every 5 seconds), so a job
just taken from its queue is briefly nowhere. A strategy that saw the job waiting answers
``started`` for ``pickup_grace`` seconds after it first finds it nowhere, then ``finished``.

**Lookup cost.** A server-side Lua script walks the structures in the order above, a chunk of
``scan_chunk`` payloads per call: a plain substring search for the id, then an exact comparison
of the decoded ``jid``/``job_id`` of the few candidates. Only matches cross the network, and
Redis is never blocked for more than one chunk. A strategy remembers where it last saw each
waiting job and looks there first: a queued job only moves right in its list, a scheduled one
keeps its score. :meth:`SidekiqStrategy.status_many` looks up every id in one walk. Redis
Cluster is not supported (Sidekiq does not support it either).

Where Redis is: ``SidekiqStrategy(url)``, else :func:`configure`, else the environment
(``IMMORTUS_SIDEKIQ_URL``, then Sidekiq's own ``REDIS_PROVIDER``/``REDIS_URL``), else
``redis://localhost:6379/0`` as Sidekiq does. Needs the ``immortus[redis]`` extra.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Final

from immortus.exceptions import (
    InvalidInput,
    InvalidStoreURL,
    MissingDependency,
    StoreUnavailable,
)
from immortus.status import MAX_ERROR_MESSAGE_LENGTH, JobError, JobStatus, State, isoformat
from immortus.strategy import TrackingStrategy
from immortus.validation import check_job_id

try:
    import redis
    from redis.exceptions import RedisError
except ImportError as exc:
    raise MissingDependency("redis", "redis") from exc

__all__ = ["DEFAULT_ID_PATTERN", "Location", "SidekiqJob", "SidekiqStrategy", "configure"]

#: ActiveJob's ``job_id`` (a UUID) or Sidekiq's ``jid`` (12 random bytes in hex).
DEFAULT_ID_PATTERN: Final = re.compile(
    r"[0-9a-f]{24}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
#: Environment variable read when neither the constructor nor :func:`configure` gives a URL.
URL_ENV: Final = "IMMORTUS_SIDEKIQ_URL"
#: Environment variable read when neither the constructor nor :func:`configure` gives a namespace.
NAMESPACE_ENV: Final = "IMMORTUS_SIDEKIQ_NAMESPACE"
#: Sidekiq's own default.
DEFAULT_URL: Final = "redis://localhost:6379/0"
#: How many payloads the first script call of a scan examines; each next call, 4 times more.
_FIRST_CHUNK: Final = 128
#: How many ids the pickup grace remembers per strategy.
_REMEMBERED: Final = 10_000

# ARGV[1] = key prefix. Returns the work hashes of live processes (whose heartbeat key exists,
# as Sidekiq::WorkSet checks) and the queue lists, in name order.
_LAYOUT_SCRIPT: Final = """
local prefix, work, queues = ARGV[1], {}, {}
for _, identity in ipairs(redis.call('SMEMBERS', prefix .. 'processes')) do
  if redis.call('EXISTS', prefix .. identity) == 1 then
    table.insert(work, prefix .. identity .. ':workers')
    table.insert(work, prefix .. identity .. ':work')
  end
end
local names = redis.call('SMEMBERS', prefix .. 'queues')
table.sort(names)
for _, name in ipairs(names) do table.insert(queues, prefix .. 'queue:' .. name) end
return {work, queues}
"""

# Walks KEYS from key ARGV[1] at offset ARGV[2], examining at most ARGV[3] payloads; ARGV[4] ids
# follow, then the substrings that preselect candidates. Hashes are read whole (work hashes:
# one entry per busy thread), lists from the left (pushes there, pops on the right), sorted
# sets from the highest score (removals at the low end): normal traffic never makes it skip an
# entry. Returns {next key, next offset, {{key index, id, payload, score, list index}, ...}}.
_SCAN_SCRIPT: Final = """
local index, offset, budget, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local wanted, needles, found, missing = {}, {}, {}, n
for i = 5, 4 + n do wanted[ARGV[i]] = true end
for i = 5 + n, #ARGV do table.insert(needles, ARGV[i]) end

local function decode(text)
  local ok, value = pcall(cjson.decode, text)
  if ok and type(value) == 'table' then return value end
  return nil
end

local function ids_of(job)
  local ids = {}
  if job == nil then return ids end
  if type(job.jid) == 'string' and wanted[job.jid] then table.insert(ids, job.jid) end
  local args = job.args
  if type(args) == 'table' and type(args[1]) == 'table' then
    local id = args[1].job_id
    if type(id) == 'string' and wanted[id] and id ~= job.jid then table.insert(ids, id) end
  end
  return ids
end

local function check(text, score, position, wrapped)
  local hit = false
  for _, needle in ipairs(needles) do
    if string.find(text, needle, 1, true) then hit = true break end
  end
  if not hit then return end
  local job = decode(text)
  if wrapped and job ~= nil then
    job = type(job.payload) == 'string' and decode(job.payload) or job.payload
    if type(job) ~= 'table' then job = nil end
  end
  for _, id in ipairs(ids_of(job)) do
    table.insert(found, {index, id, text, score, position})
    wanted[id], missing = nil, missing - 1
  end
end

while index <= #KEYS and budget > 0 and missing > 0 do
  local key = KEYS[index]
  local kind = redis.call('TYPE', key)['ok']
  local items, step = {}, 1
  if kind == 'hash' then
    items = redis.call('HVALS', key)
    for _, text in ipairs(items) do check(text, '', 0, true) end
  elseif kind == 'list' then
    items = redis.call('LRANGE', key, offset, offset + budget - 1)
    for i = 1, #items do
      check(items[i], '', offset + i - 1, false)
      if missing == 0 then break end
    end
  elseif kind == 'zset' then
    items, step = redis.call('ZREVRANGE', key, offset, offset + budget - 1, 'WITHSCORES'), 2
    for i = 1, #items, 2 do
      check(items[i], items[i + 1], 0, false)
      if missing == 0 then break end
    end
  end
  local seen = #items / step
  budget = budget - seen
  if (kind == 'list' or kind == 'zset') and budget <= 0 then
    offset = offset + seen
  else
    index, offset = index + 1, 0
  end
end
return {index, offset, found}
"""


class Location(StrEnum):
    """The Sidekiq structure a job's payload was found in (``meta["location"]``)."""

    BUSY = "busy"
    RETRY = "retry"
    DEAD = "dead"
    SCHEDULE = "schedule"
    QUEUE = "queue"


#: Where a job waits to be taken by a worker: finding it nowhere next is ambiguous.
_WAITING: Final = frozenset({Location.QUEUE, Location.SCHEDULE, Location.RETRY})


@dataclass(frozen=True, slots=True)
class SidekiqJob:
    """A job's payload as found in Sidekiq's Redis.

    ``score`` is the sorted set's score (when due for ``schedule`` and ``retry``, when it died
    for ``dead``); ``work`` is the work-hash entry (``queue``, ``run_at``) of a busy job.
    """

    location: Location
    payload: Mapping[str, Any]
    score: float | None = None
    work: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Settings:
    url: str | None = None
    namespace: str | None = None


_settings = _Settings()


def configure(*, url: str | None = None, namespace: str | None = None) -> None:
    """Set where strategies made without a URL find Sidekiq's Redis, from their next look-up.

    ``namespace`` is the ``redis-namespace`` prefix Sidekiq was configured with, if any.
    """
    global _settings  # noqa: PLW0603 - one process-wide setting, swapped whole
    _settings = _Settings(url=url, namespace=namespace)


def _default_url() -> str:
    if _settings.url:
        return _settings.url
    provider = os.environ.get("REDIS_PROVIDER", "REDIS_URL")
    return os.environ.get(URL_ENV) or os.environ.get(provider) or DEFAULT_URL


def _connect(url: str) -> redis.Redis:
    """Return a client for ``url`` that fails within seconds when Redis is away (no I/O yet)."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=2, decode_responses=True
        )
        pool = client.connection_pool
        pool.connection_class(**pool.connection_kwargs)  # refuses unknown options; no I/O
    except (ValueError, TypeError) as exc:
        raise InvalidStoreURL(f"malformed Sidekiq Redis URL: {exc}") from exc
    return client


def _needles(job_id: str) -> set[str]:
    """The forms ``job_id`` takes inside a payload's JSON, and inside a work entry's string."""
    forms = set()
    for ascii_only in (False, True):
        once = json.dumps(job_id, ensure_ascii=ascii_only)[1:-1]
        forms |= {once, once.replace("/", "\\/"), json.dumps(once, ensure_ascii=ascii_only)[1:-1]}
    return forms


def _moment(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _as_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _ids_of(payload: object) -> set[str]:
    """The ``jid`` and ActiveJob ``job_id`` a decoded payload carries."""
    if not isinstance(payload, dict):
        return set()
    ids = {payload.get("jid")}
    args = payload.get("args")
    if isinstance(args, list) and args and isinstance(args[0], dict):
        ids.add(args[0].get("job_id"))
    return {job_id for job_id in ids if isinstance(job_id, str)}


@dataclass(slots=True)
class _Sighting:
    """Where a strategy last saw a waiting job, and when it first found it nowhere since."""

    key: str
    position: int | str  # the list index from the left, or the sorted set score
    missed_at: float | None = None


@dataclass(frozen=True, slots=True)
class _Hit:
    job: SidekiqJob
    key: str
    position: int | str


class SidekiqStrategy(TrackingStrategy):
    """Answers from Sidekiq's Redis structures; read-only, needs no callbacks.

    ``url`` (or a ``client``) says where Redis is; without either, :func:`configure` and the
    environment are read at each look-up (module docstring). ``namespace`` is the
    ``redis-namespace`` prefix, if Sidekiq uses one. ``id_pattern`` refuses ids that cannot be
    a ``jid`` or ActiveJob ``job_id`` (answered ``unknown``); ``None`` accepts any id.
    ``scan_chunk`` is how many payloads one script call examines. ``pickup_grace`` is how long
    a job seen waiting and then found nowhere is still ``started`` (the heartbeat gap); 0 turns
    it off. ``clock`` measures it (seconds, monotonic).

    Raises:
        InvalidStoreURL: ``url`` is malformed.
        InvalidInput: ``scan_chunk`` is below 1.
    """

    certain: ClassVar[bool] = False

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        namespace: str | None = None,
        id_pattern: str | re.Pattern[str] | None = DEFAULT_ID_PATTERN,
        scan_chunk: int = 1000,
        pickup_grace: float = 7.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if scan_chunk < 1:
            raise InvalidInput(f"scan_chunk must be at least 1, not {scan_chunk}")
        self._client = client if client is not None else None if url is None else _connect(url)
        self._explicit = self._client is not None
        self._configured: tuple[str, redis.Redis] | None = None  # (url, client) from settings
        self._namespace = namespace
        self.id_pattern = re.compile(id_pattern) if isinstance(id_pattern, str) else id_pattern
        self.scan_chunk = scan_chunk
        self.pickup_grace = pickup_grace
        self._clock = clock
        self._lock = threading.Lock()
        self._sightings: OrderedDict[str, _Sighting] = OrderedDict()

    def status(self, job_id: str) -> JobStatus:
        """Return the job's status, inferred from where its payload is (module table).

        Raises:
            InvalidJobId: ``job_id`` is not a usable job id.
            StoreUnavailable: Sidekiq's Redis cannot be reached.
        """
        return self.status_many([job_id])[job_id]

    def status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the status of every id, looked up in one walk of Sidekiq's structures.

        Raises:
            InvalidJobId: an id is not a usable job id.
            StoreUnavailable: Sidekiq's Redis cannot be reached.
        """
        unique = list(dict.fromkeys(check_job_id(job_id) for job_id in job_ids))
        found = self._find(unique)
        return {job_id: self._answer(job_id, found.get(job_id)) for job_id in unique}

    def find(self, job_id: str) -> SidekiqJob | None:
        """Return where the job with this ActiveJob ``job_id`` or Sidekiq ``jid`` is, if anywhere.

        Raises:
            InvalidJobId: ``job_id`` is not a usable job id.
            StoreUnavailable: Sidekiq's Redis cannot be reached.
        """
        return self.find_many([job_id]).get(job_id)

    def find_many(self, job_ids: Sequence[str]) -> dict[str, SidekiqJob]:
        """Return where each of the jobs is, for those found; one walk for all of them.

        Raises:
            InvalidJobId: an id is not a usable job id.
            StoreUnavailable: Sidekiq's Redis cannot be reached.
        """
        unique = list(dict.fromkeys(check_job_id(job_id) for job_id in job_ids))
        return {job_id: hit.job for job_id, hit in self._find(unique).items()}

    # -- finding --------------------------------------------------------------------------

    def _find(self, job_ids: list[str]) -> dict[str, _Hit]:
        if self.id_pattern is not None:
            job_ids = [job_id for job_id in job_ids if self.id_pattern.fullmatch(job_id)]
        if not job_ids:
            return {}
        with self._lock:
            hints = {
                job_id: self._sightings[job_id] for job_id in job_ids if job_id in self._sightings
            }
        with self._guard() as client:
            found = self._look_where_seen(client, hints)
            rest = [job_id for job_id in job_ids if job_id not in found]
            if rest:
                found.update(self._walk(client, rest))
        self._remember(found)
        return found

    def _look_where_seen(self, client: redis.Redis, hints: dict[str, _Sighting]) -> dict[str, _Hit]:
        """Look first where each job was last seen: a waiting job moves little between polls.

        A sorted set member keeps its score; a list entry only moves right (pushes are on the
        left), so the scan starts at its last index.
        """
        found: dict[str, _Hit] = {}
        scored = {job_id: hint for job_id, hint in hints.items() if isinstance(hint.position, str)}
        if scored:
            pipe = client.pipeline(transaction=False)
            for hint in scored.values():
                pipe.zrangebyscore(hint.key, hint.position, hint.position)
            for (job_id, hint), members in zip(scored.items(), pipe.execute(), strict=True):
                for text in members:
                    if job_id in _ids_of(_decode(text)):
                        location = self._location_of(hint.key)
                        found[job_id] = _Hit(
                            _parse(location, text, str(hint.position)), hint.key, hint.position
                        )
        for job_id, hint in hints.items():
            if isinstance(hint.position, int):
                hits = self._scan(
                    client, [hint.key], [Location.QUEUE], [job_id], offset=hint.position
                )
                found.update(hits)
        return found

    def _walk(self, client: redis.Redis, wanted: list[str]) -> dict[str, _Hit]:
        """Look everywhere, in the module table's order; stop when every job is found."""
        prefix = self._prefix()
        work_keys, queue_keys = client.register_script(_LAYOUT_SCRIPT)(args=[prefix])
        keys = [*work_keys, f"{prefix}retry", f"{prefix}dead", f"{prefix}schedule", *queue_keys]
        where = (
            [Location.BUSY] * len(work_keys)
            + [Location.RETRY, Location.DEAD, Location.SCHEDULE]
            + [Location.QUEUE] * len(queue_keys)
        )
        return self._scan(client, keys, where, wanted)

    def _scan(
        self,
        client: redis.Redis,
        keys: list[str],
        where: list[Location],
        wanted: list[str],
        *,
        offset: int = 0,
    ) -> dict[str, _Hit]:
        scan = client.register_script(_SCAN_SCRIPT)
        found: dict[str, _Hit] = {}
        index, chunk = 1, min(_FIRST_CHUNK, self.scan_chunk)
        while index <= len(keys) and len(found) < len(wanted):
            missing = [job_id for job_id in wanted if job_id not in found]
            needles: set[str] = set().union(*(_needles(job_id) for job_id in missing))
            args: list[int | str] = [index, offset, chunk, len(missing)]
            chunk = min(chunk * 4, self.scan_chunk)  # small first: most jobs are found early
            args += [*missing, *sorted(needles)]
            index, offset, matches = scan(keys=keys, args=args)
            for key_index, job_id, text, score, position in matches:
                if job_id not in found:  # the first structure in walk order wins
                    location, key = where[key_index - 1], keys[key_index - 1]
                    job = _parse(location, text, score)
                    found[job_id] = _Hit(job, key, score if score else int(position))
        return found

    def _location_of(self, key: str) -> Location:
        name = key.removeprefix(self._prefix())
        return Location(name) if name in ("retry", "dead", "schedule") else Location.QUEUE

    def _prefix(self) -> str:
        namespace = self._namespace
        if namespace is None and not self._explicit:
            namespace = _settings.namespace or os.environ.get(NAMESPACE_ENV)
        return f"{namespace}:" if namespace else ""

    @contextmanager
    def _guard(self) -> Iterator[redis.Redis]:
        """Yield the client; translate its errors into :class:`StoreUnavailable`."""
        client = self._client
        if client is None:
            url = _default_url()
            with self._lock:
                if self._configured is None or self._configured[0] != url:
                    if self._configured is not None:
                        self._configured[1].close()
                    self._configured = (url, _connect(url))
                client = self._configured[1]
        try:
            yield client
        except RedisError as exc:
            settings = client.connection_pool.connection_kwargs
            detail = f"{type(exc).__name__}: {exc}"
            if settings.get("password"):
                detail = detail.replace(settings["password"], "***")
            where = f"{settings.get('host', settings.get('path'))}:{settings.get('port', '')}"
            raise StoreUnavailable(f"Sidekiq's redis at {where} is unavailable: {detail}") from exc

    # -- answering ------------------------------------------------------------------------

    def _remember(self, found: dict[str, _Hit]) -> None:
        """Keep where waiting jobs were seen; forget the others (running, dead)."""
        with self._lock:
            for job_id, hit in found.items():
                self._sightings.pop(job_id, None)
                if hit.job.location in _WAITING:
                    self._sightings[job_id] = _Sighting(hit.key, hit.position)
            while len(self._sightings) > _REMEMBERED:
                self._sightings.popitem(last=False)

    def _answer(self, job_id: str, hit: _Hit | None) -> JobStatus:
        if hit is not None:
            return _status(job_id, hit.job)
        if self.id_pattern is not None and not self.id_pattern.fullmatch(job_id):
            return JobStatus.unknown(job_id)
        now = self._clock()
        with self._lock:
            sighting = self._sightings.get(job_id)
            if sighting is not None:
                if sighting.missed_at is None:
                    sighting.missed_at = now
                if now - sighting.missed_at < self.pickup_grace:
                    # Taken from its queue a moment ago: running, not yet in a work hash.
                    return JobStatus(job_id=job_id, state=State.STARTED, certain=False)
                del self._sightings[job_id]
        return JobStatus(job_id=job_id, state=State.FINISHED, certain=False)


def _decode(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _parse(location: Location, text: str, score: str) -> SidekiqJob:
    """Decode a payload the scan script matched (it decoded it already: it is valid JSON)."""
    decoded = json.loads(text)
    work: dict[str, Any] = {}
    if location is Location.BUSY:
        work, decoded = decoded, decoded.get("payload")
        if isinstance(decoded, str):
            decoded = json.loads(decoded)
    return SidekiqJob(location, decoded, float(score) if score else None, work)


def _status(job_id: str, job: SidekiqJob) -> JobStatus:
    """The status a payload found at ``job.location`` means (module table)."""
    payload = job.payload
    args = payload.get("args")
    active_job = args[0] if isinstance(args, list) and args and isinstance(args[0], dict) else {}
    failures = _as_int(payload["retry_count"]) + 1 if "retry_count" in payload else 0
    earlier = _as_int(active_job.get("executions")) + failures
    waiting = State.RETRYING if earlier else State.CREATED
    if job.location is Location.BUSY:
        state, run_at = State.STARTED, _moment(job.work.get("run_at"))
    elif job.location is Location.QUEUE:
        state, run_at = waiting, _moment(payload.get("enqueued_at"))
    elif job.location is Location.DEAD:
        state, run_at = State.FAILED, None
    else:  # retry and schedule: the score is when it is due
        state = State.RETRYING if job.location is Location.RETRY else waiting
        run_at = _moment(job.score)
    error = None
    if "error_class" in payload:
        message = str(payload.get("error_message", ""))
        if len(message) > MAX_ERROR_MESSAGE_LENGTH:
            message = message[: MAX_ERROR_MESSAGE_LENGTH - 1] + "…"
        error = JobError(type=str(payload["error_class"]), message=message)
    job_class = payload.get("wrapped") or active_job.get("job_class") or payload.get("class")
    return JobStatus(
        job_id=job_id,
        state=state,
        job_class=str(job_class) if job_class else None,
        error=error,
        attempts=earlier + (1 if state is State.STARTED else 0),
        enqueued_at=_moment(payload.get("created_at")),
        started_at=run_at if state is State.STARTED else None,
        finished_at=_moment(job.score) if state is State.FAILED else None,
        updated_at=_moment(payload.get("retried_at") or payload.get("failed_at")),
        meta={
            "location": job.location.value,
            "queue": payload.get("queue"),
            "priority": active_job.get("priority"),
            "run_at": isoformat(run_at),
            "jid": payload.get("jid"),
            "active_job_id": active_job.get("job_id"),
        },
        certain=True,
    )

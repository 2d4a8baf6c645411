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
nowhere, seen running in a     ``lost``      ``WorkerLost``: the process was killed (it is
process that stopped beating                 still registered, its last beat older than
                                             ``process_timeout``); basic fetch drops the job
nowhere, seen before           ``finished``  ``certain=False``, ``success`` ``null``: ended,
                                             outcome unknown
nowhere, never seen            ``unknown``   no evidence the id ever existed
=============================  ============  ===================================================

A job is found by its ActiveJob ``job_id`` (``args[0].job_id``) or its Sidekiq ``jid``. Both are
compared exactly; an id that cannot be either (not a UUID, not 24 hex digits) is ``unknown``
without asking Redis, unless ``id_pattern=None``.

**Gone is not success.** Sidekiq deletes a job that ended, well or not (a dead job is trimmed
too), so a job that is nowhere is read as ended only when a strategy saw it before: in this
process, or in another one through the journal (:mod:`immortus.queues.rails.journal`, in
Sidekiq's Redis). Sidekiq 6.4 writes a running job to its process's work hash only at the
next heartbeat (every 5 seconds), so a job just taken from its queue is briefly nowhere: a job
seen waiting is ``started`` for ``pickup_grace`` seconds after it is first found nowhere.
A job found ended is answered from memory from then on. Rails jobs that include the Ruby module
of the docs write their own events to the journal: they read exactly, with progress.

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

from immortus import runtime
from immortus.exceptions import (
    InvalidInput,
    MissingDependency,
    StoreUnavailable,
)
from immortus.queues.rails.journal import DEFAULT_PREFIX, Journal, connect
from immortus.queues.rails.notes import Note, Seen
from immortus.queues.rails.reader import Found, RailsReader
from immortus.queues.rails.sidekiq_lua import LAYOUT_SCRIPT, SCAN_SCRIPT
from immortus.status import JobError, JobStatus, State, isoformat
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
#: Sidekiq beats every 5 seconds: a process is presumed dead after two missed beats at least.
_MIN_PROCESS_TIMEOUT: Final = 10.0
#: How many ids a strategy remembers (places, first misses, ended answers), each.
_REMEMBERED: Final = 10_000


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


class SidekiqSettings:
    """Where Sidekiq's Redis is, as :func:`configure` set it: an :mod:`immortus.runtime` part.

    A reset keeps it, as the queues' installs: it is the application's wiring, which
    ``configure()`` changes.
    """

    def __init__(self) -> None:
        self.url: str | None = None
        self.namespace: str | None = None

    def reset(self) -> None:
        """Keep the setting."""

    def after_fork(self) -> None:
        """Nothing to drop: settings only."""


_settings: Final = runtime.part(SidekiqSettings)


def configure(*, url: str | None = None, namespace: str | None = None) -> None:
    """Set where strategies made without a URL find Sidekiq's Redis, from their next look-up.

    ``namespace`` is the ``redis-namespace`` prefix Sidekiq was configured with, if any.
    """
    _settings.url, _settings.namespace = url, namespace


def _default_url() -> str:
    if _settings.url:
        return _settings.url
    provider = os.environ.get("REDIS_PROVIDER", "REDIS_URL")
    return os.environ.get(URL_ENV) or os.environ.get(provider) or DEFAULT_URL


def _connect(url: str) -> redis.Redis:
    return connect(url, "Sidekiq Redis")


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


@dataclass(frozen=True, slots=True)
class _Sighting:
    """Where a strategy last saw a waiting job: a place to look first at the next poll."""

    key: str
    position: int | str  # the list index from the left, or the sorted set score


@dataclass(frozen=True, slots=True)
class _Hit:
    job: SidekiqJob
    key: str
    position: int | str
    process: str | None = None  # the identity of the process whose work hash holds it


class SidekiqStrategy(RailsReader):
    """Answers from Sidekiq's Redis structures and the journal beside them; needs no callbacks.

    ``url`` (or a ``client``) says where Redis is; without either, :func:`configure` and the
    environment are read at each look-up (module docstring). ``namespace`` is the
    ``redis-namespace`` prefix, if Sidekiq uses one. ``id_pattern`` refuses ids that cannot be
    a ``jid`` or ActiveJob ``job_id`` (answered ``unknown``); ``None`` accepts any id.
    ``scan_chunk`` is how many payloads one script call examines. ``pickup_grace`` is how long
    a job seen waiting and then found nowhere is still ``started`` (the heartbeat gap); 0 turns
    it off. ``process_timeout`` is how old a process's last heartbeat may be before the jobs it
    ran are ``lost``. ``journal`` shares what the strategy saw with every process through
    Sidekiq's Redis and reads the events the Rails jobs write (``False``: this process only);
    ``journal_prefix`` starts its keys. ``clock`` measures the grace (seconds, monotonic).

    Raises:
        InvalidStoreURL: ``url`` is malformed.
        InvalidInput: ``scan_chunk`` is below 1, or ``process_timeout`` below 10 seconds.
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
        process_timeout: float = 30.0,
        journal: bool = True,
        journal_prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if scan_chunk < 1:
            raise InvalidInput(f"scan_chunk must be at least 1, not {scan_chunk}")
        if process_timeout < _MIN_PROCESS_TIMEOUT:
            raise InvalidInput(
                f"process_timeout must be at least {_MIN_PROCESS_TIMEOUT} seconds (two of "
                f"Sidekiq's heartbeats), not {process_timeout}"
            )
        super().__init__()
        self._client = client if client is not None else None if url is None else _connect(url)
        self._explicit = self._client is not None
        self._configured: tuple[str, redis.Redis] | None = None  # (url, client) from settings
        self._namespace = namespace
        self.id_pattern = re.compile(id_pattern) if isinstance(id_pattern, str) else id_pattern
        self.scan_chunk = scan_chunk
        self.pickup_grace = pickup_grace
        self.process_timeout = process_timeout
        self.journal = journal
        self.journal_prefix = journal_prefix
        self._clock = clock
        self._lock = threading.Lock()
        self._sightings: OrderedDict[str, _Sighting] = OrderedDict()
        self._missed: OrderedDict[str, float] = OrderedDict()  # first found nowhere, by clock

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
        if self.id_pattern is not None:
            unique = [job_id for job_id in unique if self.id_pattern.fullmatch(job_id)]
        if not unique:
            return {}
        with self._guard() as client:
            found = self._find(client, unique)
        return {job_id: hit.job for job_id, hit in found.items()}

    # -- what the Rails reader asks -------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Journal | None]:
        with self._guard() as client:
            yield Journal(client, prefix=self.journal_prefix) if self.journal else None

    def _accepts(self, job_id: str) -> bool:
        return self.id_pattern is None or self.id_pattern.fullmatch(job_id) is not None

    def _find_in_queue(self, job_ids: list[str]) -> dict[str, Found]:
        with self._guard() as client:
            hits = self._find(client, job_ids)
        return {
            job_id: Found(
                _status(job_id, hit.job),
                _SEEN[hit.job.location],
                hit.process,
                frozenset(_ids_of(hit.job.payload)),
            )
            for job_id, hit in hits.items()
        }

    def _in_grace(self, job_id: str, note: Note) -> bool:
        """Whether a job seen waiting was first found nowhere under ``pickup_grace`` ago."""
        if note.seen is not Seen.WAITING:
            return False
        now = self._clock()
        with self._lock:
            missed = self._missed.setdefault(job_id, now)
            while len(self._missed) > _REMEMBERED:
                self._missed.popitem(last=False)
        return now - missed < self.pickup_grace

    def _forget_places(self, job_id: str) -> None:
        with self._lock:
            self._sightings.pop(job_id, None)
            self._missed.pop(job_id, None)

    def _dead_processes(self, notes: Sequence[Note]) -> dict[str, str]:
        """Of the processes that ran these jobs, those killed: why, by identity.

        A process is killed when it is still registered (a process that stops cleanly leaves
        the ``processes`` set) but its heartbeat key has expired or its last beat is older than
        ``process_timeout``.
        """
        identities = sorted({n.process for n in notes if n.seen is Seen.RUNNING and n.process})
        if not identities:
            return {}
        prefix = self._prefix()
        with self._guard() as client, client.pipeline(transaction=False) as pipe:
            for identity in identities:
                pipe.sismember(f"{prefix}processes", identity)
                pipe.hget(f"{prefix}{identity}", "beat")
            replies = pipe.execute()
        dead: dict[str, str] = {}
        for number, identity in enumerate(identities):
            registered, beat = replies[2 * number], _moment(replies[2 * number + 1])
            if registered and (
                beat is None or time.time() - beat.timestamp() > self.process_timeout
            ):
                dead[identity] = _lost_message(identity, None if beat is None else beat.timestamp())
        return dead

    # -- finding --------------------------------------------------------------------------

    def _find(self, client: redis.Redis, job_ids: list[str]) -> dict[str, _Hit]:
        with self._lock:
            hints = {
                job_id: self._sightings[job_id] for job_id in job_ids if job_id in self._sightings
            }
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
        oldest = time.time() - self.process_timeout
        work_keys, queue_keys = client.register_script(LAYOUT_SCRIPT)(args=[prefix, oldest])
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
        scan = client.register_script(SCAN_SCRIPT)
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
                    process = None
                    if location is Location.BUSY:
                        process = key.removeprefix(self._prefix()).rpartition(":")[0]
                    found[job_id] = _Hit(job, key, score if score else int(position), process)
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

    def _remember(self, found: dict[str, _Hit]) -> None:
        """Keep where waiting jobs were seen; forget the others (running, dead)."""
        with self._lock:
            for job_id, hit in found.items():
                self._sightings.pop(job_id, None)
                self._missed.pop(job_id, None)
                if hit.job.location in _WAITING:
                    self._sightings[job_id] = _Sighting(hit.key, hit.position)
            while len(self._sightings) > _REMEMBERED:
                self._sightings.popitem(last=False)


#: What a note says of a job found at each location.
_SEEN: Final = {
    Location.BUSY: Seen.RUNNING,
    Location.RETRY: Seen.WAITING,
    Location.SCHEDULE: Seen.WAITING,
    Location.QUEUE: Seen.WAITING,
    Location.DEAD: Seen.FAILED,
}


def _lost_message(identity: str | None, beat: float | None) -> str:
    when = "" if beat is None else f" since {isoformat(datetime.fromtimestamp(beat, UTC))}"
    return (
        f"its Sidekiq process {identity or '(unknown)'} stopped heart-beating{when} while "
        "running it; Sidekiq's basic fetch does not run it again"
    )


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
        message = str(payload.get("error_message", ""))  # JobError bounds it
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

"""The watchers of ``bench/push/``: one real HTTP client per job, in one process.

    python -m bench.push.watchers {sse|multi|polling} BASE_URL JOB_CLASS IDS_FILE OUT_FILE

``IDS_FILE`` is a JSON object: each job id to follow, and its token. Each watcher follows one
job over its own TCP connection with a minimal HTTP/1.1 client (asyncio streams, no library
between the socket and the count of bytes), always with the job's token:

- ``sse``: ``GET {BASE_URL}/immortus/stream/{id}/{class}?token=...``, reading the chunked
  answer frame by frame until a frame's body is ``completed``;
- ``multi``: ``POST {BASE_URL}/immortus/stream`` with the job (the multi-job stream, what the
  JavaScript client opens for a page), reading its ``event: job`` frames until ``event: end``;
- ``polling``: ``GET {BASE_URL}/immortus/verify/{id}/{class}?token=...`` on a kept-alive
  connection, ``--interval`` seconds after each answer (as the JavaScript client polls), until
  ``completed``.

Each watcher notes, on the system-wide monotonic clock, when it first saw each progress value
of its job. Once every watcher has its first answer the process prints ``ready`` on stdout; when
every job is completed (or ``--deadline`` seconds pass) it writes ``OUT_FILE``: what each watcher
saw, the requests made, bytes sent and received, errors, and its own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class WatchError(Exception):
    """The server answered something a watcher cannot follow."""


@dataclass(slots=True)
class Meter:
    """What all the watchers exchanged with the server."""

    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Sight:
    """What one watcher saw of its job: ``[current, monotonic time]`` of each new value."""

    job_id: str
    seen: list[tuple[float, float]] = field(default_factory=list)
    completed: bool = False

    def note(self, body: dict[str, Any], now: float) -> None:
        progress = body.get("progress")
        current = progress.get("current") if isinstance(progress, dict) else None
        if isinstance(current, int | float) and (not self.seen or self.seen[-1][0] != current):
            self.seen.append((float(current), now))
        self.completed = body.get("completed") is True


class Connection:
    """One kept-alive HTTP/1.1 connection, counting every byte both ways into a meter."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, meter: Meter):
        self.reader, self.writer, self.meter = reader, writer, meter

    @classmethod
    async def open(cls, host: str, port: int, meter: Meter) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, meter)

    async def get(self, host: str, path: str) -> tuple[int, dict[str, str]]:
        """Send ``GET path``; return the answer's status and headers (lower-case names)."""
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n".encode()
        return await self._send(request)

    async def post(self, host: str, path: str, body: bytes) -> tuple[int, dict[str, str]]:
        """Send ``POST path`` with a JSON ``body``; return the answer's status and headers."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return await self._send(head.encode() + body)

    async def _send(self, request: bytes) -> tuple[int, dict[str, str]]:
        self.writer.write(request)
        self.meter.requests += 1
        self.meter.bytes_out += len(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.meter.bytes_in += len(head)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    async def body(self, headers: dict[str, str]) -> bytes:
        """Read a whole body, sized or chunked."""
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
            self.meter.bytes_in += len(data)
            return data
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield a chunked body's chunks as they arrive."""
        while True:
            line = await self.reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            self.meter.bytes_in += len(line) + len(data)
            if size == 0:
                return
            yield data[:-2]

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True, slots=True)
class Server:
    """Where the watchers connect, and what they share."""

    url: str
    job_class: str
    interval: float
    meter: Meter
    tokens: dict[str, str]

    async def connect(self) -> Connection:
        parts = urlsplit(self.url)
        return await Connection.open(parts.hostname or "", parts.port or 80, self.meter)

    def path(self, route: str, job_id: str) -> str:
        base = f"{urlsplit(self.url).path}/immortus/{route}/{job_id}/{self.job_class}"
        return f"{base}?token={self.tokens[job_id]}"

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


async def follow_stream(server: Server, sight: Sight, first: asyncio.Event) -> None:
    """Follow one job's event stream until a completed frame."""
    connection = await server.connect()
    try:
        status, _ = await connection.get(server.host, server.path("stream", sight.job_id))
        await _read_frames(server, connection, status, sight, first)
    finally:
        connection.close()


async def follow_multi(server: Server, sight: Sight, first: asyncio.Event) -> None:
    """Follow one job over the multi-job stream (as a page does) until ``event: end``."""
    connection = await server.connect()
    item = {"job_id": sight.job_id, "job_class": server.job_class}
    body = json.dumps({"jobs": [{**item, "token": server.tokens[sight.job_id]}]}).encode()
    try:
        path = f"{urlsplit(server.url).path}/immortus/stream"
        status, _ = await connection.post(server.host, path, body)
        await _read_frames(server, connection, status, sight, first)
    finally:
        connection.close()


async def _read_frames(
    server: Server, connection: Connection, status: int, sight: Sight, first: asyncio.Event
) -> None:
    """Read a stream's frames (one job's, or a multi-job stream's) until its job completed."""
    if status != 200:
        raise WatchError(f"stream {sight.job_id} answered {status}")
    buffer = b""
    async for chunk in connection.chunks():
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            now = time.monotonic()
            if frame.startswith(b"data: "):
                sight.note(json.loads(frame[len(b"data: ") :]), now)
                first.set()
            elif frame.startswith(b"event: job\ndata: "):
                sight.note(json.loads(frame[len(b"event: job\ndata: ") :])["body"], now)
                first.set()
            elif frame.startswith(b"event: error"):
                server.meter.errors.append(f"{sight.job_id}: {frame[:200]!r}")
            if sight.completed:
                return
    raise WatchError(f"stream {sight.job_id} ended before its job completed")


async def follow_polling(server: Server, sight: Sight, first: asyncio.Event) -> None:
    """Poll one job's verify route until it is completed, ``interval`` after each answer.

    The first request goes at once; the second after a random part of ``interval``, so that
    the watchers' polls spread over the interval as those of pages opened at random times do.
    """
    connection = await server.connect()
    path = server.path("verify", sight.job_id)
    pause = random.uniform(0, server.interval)
    try:
        while True:
            status, headers = await connection.get(server.host, path)
            body = await connection.body(headers)
            if status != 200:
                raise WatchError(f"verify {sight.job_id} answered {status}: {body[:200]!r}")
            sight.note(json.loads(body), time.monotonic())
            first.set()
            if sight.completed:
                return
            await asyncio.sleep(pause)
            pause = server.interval
    finally:
        connection.close()


async def watch(args: argparse.Namespace, tokens: dict[str, str]) -> dict[str, Any]:
    meter = Meter()
    server = Server(args.url, args.job_class, args.interval, meter, tokens)
    follow = {"sse": follow_stream, "multi": follow_multi, "polling": follow_polling}[args.mode]
    job_ids = list(tokens)
    sights = [Sight(job_id) for job_id in job_ids]
    firsts = [asyncio.Event() for _ in job_ids]
    runs = [follow(server, sight, first) for sight, first in zip(sights, firsts, strict=True)]
    tasks = [asyncio.create_task(run) for run in runs]
    deadline = time.monotonic() + args.deadline
    while not all(first.is_set() for first in firsts):
        failed = [task for task in tasks if task.done() and task.exception() is not None]
        if failed or time.monotonic() > deadline:
            for task in tasks:
                task.cancel()
            reason = repr(failed[0].exception()) if failed else "no first answer in time"
            raise WatchError(f"a watcher failed: {reason}")
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for task in pending:
        task.cancel()
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            meter.errors.append(repr(task.exception()))
    cpu = os.times()
    return {
        "mode": args.mode,
        "watchers": len(job_ids),
        "unfinished": len(pending),
        "requests": meter.requests,
        "bytes_in": meter.bytes_in,
        "bytes_out": meter.bytes_out,
        "errors": meter.errors[:20],
        "error_count": len(meter.errors),
        "cpu_s": cpu.user + cpu.system,
        "seen": {sight.job_id: sight.seen for sight in sights},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.push.watchers", description=__doc__)
    parser.add_argument("mode", choices=("sse", "multi", "polling"))
    parser.add_argument("url", help="the server's base URL, http://127.0.0.1:PORT")
    parser.add_argument("job_class")
    parser.add_argument("ids_file", help="a JSON object: each job id to follow, and its token")
    parser.add_argument("out_file")
    parser.add_argument("--interval", type=float, default=0.5, help="polling interval (0.5 s)")
    parser.add_argument("--deadline", type=float, default=120.0, help="give up after (120 s)")
    args = parser.parse_args(argv)
    with open(args.ids_file, encoding="utf-8") as file:
        tokens = json.load(file)
    try:
        report = asyncio.run(watch(args, tokens))
    except WatchError as exc:
        print(f"push_watchers: {exc}", file=sys.stderr)
        return 1
    with open(args.out_file, "w", encoding="utf-8") as file:
        json.dump(report, file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

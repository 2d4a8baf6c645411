"""Hostile requests against every adapter on a real server: 4xx answers, bounded memory.

Issue 7 item 3: whatever a client sends (a 64 MiB batch body, with a Content-Length, chunked,
with none, or with one that lies; a 64 MiB URL; JSON nested 30 000 deep; 20 000 items in
64 KiB; a million items), the server answers 4xx, with immortus's JSON body wherever the
adapter is the one answering, never a 5xx, never a traceback; its memory does not grow with
what was sent; and it answers a normal batch afterwards.

How memory is measured. Every server runs in a thread of this process
(:mod:`tests.web.servers`), so :mod:`tracemalloc` sees each allocation the server makes for the
request. The cost of a request is the peak of traced memory during the exchange, less what was
traced when it began. The client holds nothing of what it sends: it writes the same 64 KiB
chunk over and over on a raw socket (:func:`exchange`), so its own share of the peak is its
reads of the answer, well under a MiB. The exchange ends when the server closes the
connection, so by then the server has answered and read, drained or dropped the rest of the
request.

The bound, :data:`BOUND` (8 MiB), is an eighth of the 64 MiB sent: a server holding the body,
or any sizeable fraction of it, fails; one holding a chunk or two passes with a wide margin (the
adapters read at most :data:`~immortus.web.MAX_BATCH_BYTES` + 1 bytes of a batch body). A body
four times larger meets the same bound: what the server holds does not grow with the body.

The servers: uvicorn for Starlette and for Django's ASGI application, Werkzeug's threaded server
for Flask and for Django's WSGI application. What the servers themselves do, measured here too:

- uvicorn reads and drops what the app left unread (it keeps the connection), a socket read at
  a time. Django's ASGI handler reads the whole body before the view runs, into a spooled
  temporary file: up to ``FILE_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB) in memory, the rest on disk.
- Werkzeug's development server, before it closes a connection, reads and drops what the app
  left unread, 10 MB per ``read()``: its bound is :data:`WERKZEUG_BOUND`.
- Django's own development server (``runserver``) is left out: once the answer is sent it reads
  what the view left of the body in a single ``read()`` of the rest of the declared
  Content-Length (``django.core.servers.basehttp.ServerHandler.close``), which allocates that
  much at once, even if the client sends nothing more. That is the development server's doing,
  not the adapter's; uvicorn and Werkzeug, measured here, do not.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol
from urllib.parse import urlsplit

import h11
import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette

from immortus.stores.base import Store
from immortus.web import MAX_BATCH, MAX_BATCH_BYTES, Verifier
from immortus.web.asgi import immortus_routes
from immortus.web.flask import immortus_blueprint
from tests.web.conftest import routes_declared_open
from tests.web.http_contract import JSON_TYPE, ContractFixtures
from tests.web.servers import serve_asgi, serve_werkzeug

KIB: Final = 1024
MIB: Final = 1024 * KIB
#: What a hostile client sends: a body, or a URL, of 64 MiB.
HUGE: Final = 64 * MIB
#: The most a request may add to the server's traced memory: an eighth of :data:`HUGE`.
BOUND: Final = 8 * MIB
#: Werkzeug's development server reads what the app left of a body before it closes the
#: connection, 10 MB per read (``werkzeug.serving``, ``run_wsgi``), and a read's buffer is
#: made while the last one is still held: about 19 MiB at most, whatever the body's size.
WERKZEUG_BOUND: Final = 24 * MIB
#: The client writes in chunks of this size, always the same bytes object.
CHUNK: Final = 64 * KIB
SPACES: Final = b" " * CHUNK
LETTERS: Final = b"a" * CHUNK
#: A well-formed start of a batch body, before the filler.
BATCH_START: Final = b'{"jobs": ['
#: A batch asking about the contract's started job.
ONE_JOB: Final = b'{"jobs": [{"job_id": "job-1"}]}'
#: A URL longer than servers read (their request-line limits are 16 to 64 KiB) ...
#: and one every server reads whole, so that the adapter is the one answering it.
LONG: Final = 12 * KIB
#: Generous: the machine is shared, and 64 MiB goes through tracemalloc's hooks.
TIMEOUT: Final = 120.0
#: A status line of a server error anywhere in what the server sent.
SERVER_ERROR: Final = re.compile(rb"HTTP/1\.[01] 5\d\d ")


# -- the client: a raw socket, so that nothing parses or buffers what is sent --------------


@dataclass
class Exchange:
    """What the server answered to one raw request, and how much of the request it took."""

    #: The status of its first answer; ``None`` if it closed the connection without one.
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Whatever it sent after its first answer, until it closed the connection.
    rest: bytes = b""
    #: The bytes of the request the client managed to write before the server stopped reading.
    sent: int = 0
    #: Whether the server reset the connection (closed it with part of the request unread).
    reset: bool = False

    def json(self) -> dict[str, Any]:
        """The answer's JSON body, checked as every immortus error answer must be."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        assert self.headers.get("cache-control") == "no-store"
        assert b"Traceback" not in self.body
        body: dict[str, Any] = json.loads(self.body)
        return body


def exchange(base_url: str, request: Iterable[bytes], *, leave: bool = False) -> Exchange:
    """Write ``request`` (raw HTTP, chunk by chunk) to the server while reading its answer.

    The request is written in a thread; a write the server refuses (it closed or reset the
    connection) ends the writing, as with a real client. Once the first answer is in and the
    request written, the client closes its side and reads what else the server sends until it
    closes the connection (or resets it). With ``leave``, the client closes its side as soon as
    the request is written, without waiting for an answer: a client that left. Fails if
    nothing happens for :data:`TIMEOUT` seconds.
    """
    address = urlsplit(base_url)
    assert address.hostname is not None
    assert address.port is not None
    result = Exchange()
    connection = socket.create_connection((address.hostname, address.port), timeout=TIMEOUT)
    writer = threading.Thread(target=_write, args=(connection, request, result, leave), daemon=True)
    with connection:
        writer.start()
        try:
            trailing = _read_answer(connection, result)
            writer.join(TIMEOUT)
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_WR)
            result.rest = trailing + _read_to_the_end(connection)
        finally:
            writer.join(TIMEOUT)
    assert not writer.is_alive(), "the server neither read the request nor closed"
    return result


def _write(
    connection: socket.socket, request: Iterable[bytes], result: Exchange, leave: bool
) -> None:
    try:
        for chunk in request:
            connection.sendall(chunk)
            result.sent += len(chunk)
        if leave:
            connection.shutdown(socket.SHUT_WR)
    except OSError:  # the server closed or reset the connection: stop sending, as a client does
        pass


def _read_answer(connection: socket.socket, result: Exchange) -> bytes:
    """Read the server's first answer into ``result``; return what it sent after it.

    ``result.status`` stays ``None`` if the server closed or reset the connection first.
    """
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="GET", target="/", headers=[("Host", "test")]))
    body = bytearray()
    try:
        while not isinstance(event := parser.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                parser.receive_data(connection.recv(CHUNK))
            elif isinstance(event, h11.Response):
                result.status = event.status_code
                result.headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
    except ConnectionResetError:  # the server reset the connection, maybe after a status
        result.reset = True
        return b""
    except h11.RemoteProtocolError:  # it closed the connection without answering
        assert result.status is None, f"the server closed in the middle of its answer: {result}"
        return b""
    result.body = bytes(body)
    return bytes(parser.trailing_data[0])


def _read_to_the_end(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    rest = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while data := connection.recv(CHUNK):
            rest += data
    return bytes(rest)


# -- the raw requests --------------------------------------------------------------------


def _head(method: str, target: str, *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _filler(total: int, chunk: bytes = SPACES) -> Iterator[bytes]:
    """``total`` bytes (a multiple of the chunk's size) as the same chunk again and again."""
    assert total % len(chunk) == 0
    for _ in range(total // len(chunk)):
        yield chunk


def _body(size: int) -> Iterator[bytes]:
    """A batch body of ``size`` bytes and a few: its start, then spaces."""
    yield BATCH_START
    yield from _filler(size)


def _post(path: str, body: Iterable[bytes], *headers: str) -> Iterator[bytes]:
    yield _head("POST", path, "Content-Type: application/json", *headers)
    yield from body


def _chunked(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Frame ``chunks`` in chunked transfer encoding (the frames are written one by one)."""
    for chunk in chunks:
        yield b"%x\r\n" % len(chunk)
        yield chunk
        yield b"\r\n"
    yield b"0\r\n\r\n"


def _get_with_long_url(path: str, padding: int, *, query: bool) -> Iterator[bytes]:
    """``GET {path}{job id of padding letters}`` or ``?token={padding letters}``, streamed."""
    yield (f"GET {path}verify/job-1?token=" if query else f"GET {path}verify/").encode()
    if padding % CHUNK == 0:
        yield from _filler(padding, LETTERS)
    else:
        yield b"a" * padding
    yield b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _many_items(count: int) -> bytes:
    """A batch body of ``count`` empty objects: ``{"jobs": [{},{},...]}``."""
    return BATCH_START + b"{}," * (count - 1) + b"{}]}"


def _nested(depth: int) -> bytes:
    """A batch body whose jobs list is nested ``depth`` lists deep."""
    return b'{"jobs": ' + b"[" * depth + b"]" * depth + b"}"


# -- the servers ---------------------------------------------------------------------------


def _starlette() -> AbstractContextManager[str]:
    return serve_asgi(Starlette(routes=[immortus_routes()]))


def _flask() -> AbstractContextManager[str]:
    app = Flask(__name__)
    with routes_declared_open():  # this fixture runs before the tests' settings are made
        app.register_blueprint(immortus_blueprint())
    return serve_werkzeug(app)


def _django_setup() -> None:
    """Set Django up with the web tests' project (as ``test_django`` does), if not yet done.

    Done when a Django server is first needed, not at import: ``test_django`` reads what the
    app's ``ready()`` configured when *it* is imported, so this module must not run it first.
    """
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.web.django_project.settings")
    django.setup()


def _django_asgi() -> AbstractContextManager[str]:
    _django_setup()
    from django.core.asgi import get_asgi_application

    return serve_asgi(get_asgi_application())


def _django_wsgi() -> AbstractContextManager[str]:
    _django_setup()
    from django.core.wsgi import get_wsgi_application

    return serve_werkzeug(get_wsgi_application())


class Server(NamedTuple):
    """How to serve one framework's app, and what a request may cost that server."""

    serve: Callable[[], AbstractContextManager[str]]
    #: The most a request may add to the server's traced memory, in bytes.
    bound: int
    #: Whether it is an ASGI server: it tells the app when the client leaves.
    asgi: bool


class Served(NamedTuple):
    """A running server: its base URL, and what :class:`Server` says of it."""

    url: str
    bound: int
    asgi: bool


SERVERS: Final = {
    "starlette-uvicorn": Server(_starlette, BOUND, asgi=True),
    "flask-werkzeug": Server(_flask, WERKZEUG_BOUND, asgi=False),
    "django-asgi-uvicorn": Server(_django_asgi, BOUND, asgi=True),
    "django-wsgi-werkzeug": Server(_django_wsgi, WERKZEUG_BOUND, asgi=False),
}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """A real server of each framework's app, with immortus's routes under ``/immortus``."""
    server = SERVERS[request.param]
    with server.serve() as url:
        yield Served(url, server.bound, server.asgi)


@pytest.fixture
def base_url(served: Served) -> str:
    """The immortus prefix on the running server: what the contract's fixtures need."""
    return f"{served.url}/immortus"


class Send(Protocol):
    """Sends a raw request with :func:`exchange`, checking what it cost the server."""

    def __call__(self, request: Iterable[bytes], *, leave: bool = False) -> Exchange: ...


@pytest.fixture
def measure(served: Served, http: httpx.Client, jobs: Store) -> Iterator[Send]:
    """Send a raw request to the server under test; fail if it cost the server its bound.

    Traces memory for the test (unless something traces it already). A batch first warms the
    server up (its first request may import or cache things). After each exchange no 5xx may
    follow the answer, and the server must still answer that batch. Prints each peak growth.
    """
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    assert http.post("verify", content=ONE_JOB, headers=JSON_TYPE).status_code == 200

    def send(request: Iterable[bytes], *, leave: bool = False) -> Exchange:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = exchange(served.url, request, leave=leave)
        growth = tracemalloc.get_traced_memory()[1] - before
        print(f"peak growth {growth / MIB:.2f} MiB, answer {result.status}")
        assert growth < served.bound, (
            f"the server's memory grew by {growth / MIB:.1f} MiB: {result}"
        )
        assert SERVER_ERROR.search(result.rest) is None, result.rest[:200]
        still = http.post("verify", content=ONE_JOB, headers=JSON_TYPE)  # the server still answers
        assert still.status_code == 200
        assert still.json()["jobs"][0]["job_id"] == "job-1"
        return result

    try:
        yield send
    finally:
        if not tracing:
            tracemalloc.stop()


def _assert_refused(result: Exchange, *messages: str) -> None:
    """The adapter answered 400 InvalidInput, its message holding one of ``messages``."""
    assert result.status == 400, result
    error = result.json()["error"]
    assert error["type"] == "InvalidInput"
    assert any(message in error["message"] for message in messages), error


def _assert_refused_by_someone(result: Exchange) -> None:
    """A 4xx: the adapter's JSON, or the server's own refusal (a URL over its limit).

    A server refusing a request it did not read whole may close the connection while the
    request still comes in: the client then gets a reset, maybe with no answer before it.
    """
    if result.status is None:
        assert result.reset, result
        return
    assert 400 <= result.status < 500, result
    if result.headers.get("content-type", "").startswith("application/json"):
        assert "error" in result.json()
    assert b"Traceback" not in result.body


OVER_CAP = f"over {MAX_BATCH_BYTES} bytes"
NOT_JSON = "not valid JSON"


class TestHugeBodies(ContractFixtures):
    """A batch body of 64 MiB, however it is framed, costs the server its bound at most."""

    @pytest.mark.parametrize("size", [HUGE, 4 * HUGE], ids=["64MiB", "256MiB"])
    def test_with_its_content_length(self, measure: Send, size: int) -> None:
        # Four times the body, the same bound: what the server holds does not grow with it.
        length = f"Content-Length: {len(BATCH_START) + size}"
        result = measure(_post("/immortus/verify", _body(size), length))
        _assert_refused(result, OVER_CAP)

    def test_chunked(self, measure: Send) -> None:
        framed = _chunked(_body(HUGE))
        result = measure(_post("/immortus/verify", framed, "Transfer-Encoding: chunked"))
        # Django under WSGI reads no chunked body (it trusts CONTENT_LENGTH alone): empty.
        _assert_refused(result, OVER_CAP, NOT_JSON)

    def test_without_a_length_the_body_is_no_part_of_the_request(self, measure: Send) -> None:
        # HTTP/1.1: a request with neither header has no body; what follows is garbage.
        result = measure(_post("/immortus/verify", _body(HUGE)))
        _assert_refused(result, NOT_JSON)

    def test_a_small_content_length_and_a_huge_body(self, measure: Send) -> None:
        body = itertools.chain([ONE_JOB], _filler(HUGE))
        result = measure(_post("/immortus/verify", body, f"Content-Length: {len(ONE_JOB)}"))
        assert result.status == 200, result
        assert result.json()["jobs"][0]["status"] == "started"

    def test_a_huge_content_length_and_a_small_body(self, measure: Send, served: Served) -> None:
        # The client sends the start of a batch, then leaves: the body ends short.
        request = _post("/immortus/verify", [BATCH_START], f"Content-Length: {HUGE}")
        result = measure(request, leave=True)
        if served.asgi:  # the app hears that the client left, and nobody gets an answer
            assert result.status is None, result
        else:  # the app reads a short body (or none: Flask's client-disconnected error)
            _assert_refused(result, NOT_JSON)

    def test_a_million_items(self, measure: Send) -> None:
        body = _many_items(1_000_000)
        result = measure(_post("/immortus/verify", [body], f"Content-Length: {len(body)}"))
        _assert_refused(result, OVER_CAP)


class TestHostileBatches(ContractFixtures):
    """A batch within 64 KiB but hostile in shape is refused, parsed once and dropped."""

    def test_as_many_items_as_fit(self, measure: Send) -> None:
        count = (MAX_BATCH_BYTES - len(BATCH_START) - 2) // 3
        body = _many_items(count)
        assert len(body) <= MAX_BATCH_BYTES
        result = measure(_post("/immortus/verify", [body], f"Content-Length: {len(body)}"))
        _assert_refused(result, f'"jobs" holds {count} items; the limit is {MAX_BATCH}')

    def test_nested_as_deep_as_fits(self, measure: Send) -> None:
        body = _nested((MAX_BATCH_BYTES - 10) // 2)
        assert len(body) <= MAX_BATCH_BYTES
        result = measure(_post("/immortus/verify", [body], f"Content-Length: {len(body)}"))
        _assert_refused(result, NOT_JSON)


class TestHugeURLs(ContractFixtures):
    """A huge job id or token is refused by the server or the adapter, never held whole."""

    @pytest.mark.parametrize("query", [True, False], ids=["token", "job-id"])
    def test_of_64_mib(self, measure: Send, query: bool) -> None:
        result = measure(_get_with_long_url("/immortus/", HUGE, query=query))
        _assert_refused_by_someone(result)

    def test_a_long_job_id_reaches_the_adapter(self, measure: Send) -> None:
        result = measure(_get_with_long_url("/immortus/", LONG, query=False))
        assert result.status == 400, result
        assert "job id is 12288 characters long" in result.json()["error"]["message"]

    def test_a_long_token_reaches_the_adapter(self, measure: Send, secret: Verifier) -> None:
        result = measure(_get_with_long_url("/immortus/", LONG, query=True))
        assert result.status == 404, result
        assert result.json()["job_id"] == "job-1"

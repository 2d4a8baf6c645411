"""The web demo: its routes on a real uvicorn server, its Huey queue, the smoke run, the command."""

from __future__ import annotations

import json
import os
import queue as queues
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import immortus
from immortus import State, lifecycle
from immortus.cli import main
from immortus.config import STORE_ENV
from immortus.demo.queue import DemoQueue, Pace, at_speed
from immortus.demo.samples import SAMPLES, SAMPLES_BY_SLUG
from immortus.demo.server import listen, make_server
from immortus.demo.web import CSRF_HEADER, create_app
from immortus.web import get_verifier
from tests.support import modules_loaded_by, pristine_immortus

SRC = str(Path(immortus.__file__).resolve().parents[1])
SECRET = "secret-of-the-tests"  # noqa: S105
CSRF = "csrf-of-the-tests"
ODD_CSRF = '"<x>'
REPORT = SAMPLES_BY_SLUG["build-report"]
IMPORT = SAMPLES_BY_SLUG["import-rows"]


@immortus.track(name="tests.demo_web.other")
def other_job() -> None:
    """A tracked job that is no sample of the demo."""


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _pristine() -> Iterator[None]:
    with pristine_immortus():
        immortus.configure(store="memory://", secret_key=SECRET, progress_interval=0)
        yield


@pytest.fixture
def make_queue(tmp_path: Path) -> Iterator[Callable[[Pace], DemoQueue]]:
    """Make a Huey demo queue in ``tmp_path`` (its consumer not started); stop it afterwards."""
    made: list[DemoQueue] = []

    def make(pace: Pace) -> DemoQueue:
        demo_queue = DemoQueue(tmp_path, pace=pace, retry_delay=0)
        made.append(demo_queue)
        return demo_queue

    yield make
    for demo_queue in made:
        demo_queue.stop()


@pytest.fixture
def demo_queue(make_queue: Callable[[Pace], DemoQueue]) -> DemoQueue:
    """A queue whose jobs would take their demo pace (12 s for the report)."""
    return make_queue(at_speed(1.0))


@pytest.fixture
def client(demo_queue: DemoQueue) -> Iterator[httpx.Client]:
    """An HTTP client of the demo's app, served by uvicorn on a free port, with the CSRF token."""
    sock = listen("127.0.0.1", 0)
    server = make_server(create_app(demo_queue, csrf_token=CSRF), sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive())
        assert server.started, "uvicorn did not start"
        host, port = sock.getsockname()[:2]
        headers = {CSRF_HEADER: CSRF}
        with httpx.Client(base_url=f"http://{host}:{port}", headers=headers, timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"


def start(client: httpx.Client, slug: str) -> dict[str, Any]:
    answer = client.post(f"/jobs/{slug}", json={})
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()
    return job


def cancel(client: httpx.Client, job_id: str, body: object) -> httpx.Response:
    return client.post(f"/jobs/{job_id}/cancel", json=body)


def unknown_body(job_id: str, job_class: str) -> dict[str, Any]:
    return immortus.JobStatus.unknown(job_id, job_class).to_dict()


# -- the page ------------------------------------------------------------------------------


def test_the_page_loads_the_client_and_lists_the_samples(client: httpx.Client) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert '<script src="/immortus/immortus.js"></script>' in page
    assert "el('immortus-job'" in page  # each job is shown by the client's widget
    assert f'<meta name="csrf-token" content="{CSRF}">' in page
    assert "{{" not in page
    data = re.search(r'<script type="application/json" id="sample-data">(.*?)</script>', page)
    assert data is not None
    samples = json.loads(data.group(1))
    assert [sample["slug"] for sample in samples] == [sample.slug for sample in SAMPLES]
    assert [sample["cancellable"] for sample in samples] == [False, False, True, False]
    # Only the client and the page's own script may run: its nonce is new for every page.
    policy = answer.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None
    assert f'<script nonce="{nonce.group(1)}">' in page
    assert nonce.group(1) not in client.get("/").text
    assert answer.headers["cache-control"] == "no-store"


def test_the_samples_json_cannot_close_its_script_block() -> None:
    from immortus.demo.web import render_page

    page = render_page("{{ samples }}|{{ nonce }}|{{ csrf_token }}", nonce="n", csrf_token=ODD_CSRF)
    data, nonce, csrf = page.split("|")
    assert "<" not in data
    assert json.loads(data)[0]["title"] == SAMPLES[0].title
    assert (nonce, csrf) == ("n", "&quot;&lt;x&gt;")


# -- starting a job ------------------------------------------------------------------------


def test_a_sample_starts_as_a_tracked_huey_job_that_needs_its_token(
    client: httpx.Client, demo_queue: DemoQueue
) -> None:
    job = start(client, "import-rows")
    assert set(job) == {"job_id", "job_class", "token"}
    assert job["job_class"] == IMPORT.job_class
    assert [task.id for task in demo_queue.huey.pending()] == [job["job_id"]]
    path = f"/immortus/verify/{job['job_id']}/{job['job_class']}"
    answer = client.get(path, params={"token": job["token"]})
    assert answer.status_code == 200
    assert answer.json()["status"] == "created"
    assert answer.json()["enqueued_at"] is not None
    assert client.get(path).status_code == 404


def test_an_unknown_sample_is_a_json_404(client: httpx.Client, demo_queue: DemoQueue) -> None:
    answer = client.post("/jobs/os.system", json={})
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["type"] == "NotFound"
    assert "'os.system'" in error["message"]
    assert "import-rows" in error["message"]
    assert demo_queue.huey.pending_count() == 0


def test_a_post_without_the_page_csrf_token_is_refused(
    client: httpx.Client, demo_queue: DemoQueue
) -> None:
    job = start(client, "build-report")
    for headers in ({CSRF_HEADER: ""}, {CSRF_HEADER: CSRF + "x"}):
        refused = client.post("/jobs/import-rows", json={}, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "CSRFFailed"
        body = {"job_class": job["job_class"], "token": job["token"]}
        refused = client.post(f"/jobs/{job['job_id']}/cancel", json=body, headers=headers)
        assert refused.status_code == 403
    assert demo_queue.huey.pending_count() == 1
    assert not demo_queue.huey.is_revoked(job["job_id"])


# -- cancelling ----------------------------------------------------------------------------


def test_cancel_refuses_unknown_and_forged_jobs_alike(
    client: httpx.Client, demo_queue: DemoQueue
) -> None:
    job = start(client, "build-report")
    job_id, job_class, token = job["job_id"], job["job_class"], job["token"]
    other = start(client, "build-report")
    unknown = "0b1d2d6e-0000-4000-8000-000000000000"
    refusals = [
        (unknown, {"job_class": job_class, "token": token}),  # an unknown job
        (job_id, {"job_class": job_class}),  # no token
        (job_id, {"job_class": job_class, "token": None}),
        (job_id, {"job_class": job_class, "token": "v1.9999999999.forged"}),
        (job_id, {"job_class": job_class, "token": other["token"]}),  # another job's token
        (job_id, {"job_class": IMPORT.job_class, "token": token}),  # under another class
        (job_id, {"job_class": "os.system", "token": token}),  # no tracked class
    ]
    for target, body in refusals:
        answer = cancel(client, target, body)
        assert answer.status_code == 404, body
        assert answer.json() == unknown_body(target, body["job_class"]), body
    assert not demo_queue.huey.is_revoked(job_id)


def test_cancel_refuses_a_tracked_job_that_is_no_sample(
    client: httpx.Client, demo_queue: DemoQueue
) -> None:
    lifecycle.job_enqueued("job-7", "tests.demo_web.other")
    token = get_verifier().token_for("job-7", "tests.demo_web.other")
    answer = cancel(client, "job-7", {"job_class": "tests.demo_web.other", "token": token})
    assert answer.status_code == 404
    assert answer.json() == unknown_body("job-7", "tests.demo_web.other")
    assert not demo_queue.huey.is_revoked("job-7")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"not json", "the body must be"),
        (b"[]", "the body must be"),
        (b'{"token": "x"}', "job_class must be a string"),
        (b'{"job_class": "demo.build_report", "token": 7}', "token a string or null"),
        (b"{" + b" " * 5000 + b"}", "over 4096 bytes"),
    ],
)
def test_a_malformed_cancel_is_a_400(client: httpx.Client, content: bytes, says: str) -> None:
    answer = client.post("/jobs/some-job/cancel", content=content)
    assert answer.status_code == 400
    assert answer.json()["job_id"] == "some-job"
    assert says in answer.json()["error"]["message"]


def test_a_job_cancelled_before_it_starts_ends_cancelled_when_a_worker_dequeues_it(
    client: httpx.Client, demo_queue: DemoQueue
) -> None:
    job = start(client, "build-report")
    body = {"job_class": job["job_class"], "token": job["token"]}
    answer = cancel(client, job["job_id"], body)
    assert answer.status_code == 202
    assert answer.json() == {
        "job_id": job["job_id"],
        "job_class": REPORT.job_class,
        "cancelling": True,
    }
    assert demo_queue.huey.is_revoked(job["job_id"])
    demo_queue.start()  # a worker dequeues it, and Huey skips it: its revoked signal
    wait_until(lambda: immortus.status(job["job_id"]).completed)
    status = immortus.status(job["job_id"])
    assert (status.state, status.attempts, status.error) == (State.CANCELLED, 0, None)
    again = cancel(client, job["job_id"], body)
    assert again.status_code == 409
    assert again.json()["error"] == {
        "type": "AlreadyCompleted",
        "message": "the job has already ended: cancelled",
    }


def test_a_running_job_is_cancelled_at_its_next_step(demo_queue: DemoQueue) -> None:
    job_id = demo_queue.enqueue(REPORT)
    demo_queue.start()
    wait_until(lambda: immortus.status(job_id).progress is not None)
    demo_queue.cancel(job_id)
    wait_until(lambda: immortus.status(job_id).completed)
    status = immortus.status(job_id)
    assert (status.state, status.attempts, status.error) == (State.CANCELLED, 1, None)
    assert status.progress is not None
    assert status.progress.percent is not None
    assert status.progress.percent < 100


def test_stopping_the_queue_cancels_running_and_queued_jobs(demo_queue: DemoQueue) -> None:
    demo_queue.workers = 1
    running = demo_queue.enqueue(REPORT)
    queued = demo_queue.enqueue(IMPORT)
    demo_queue.start()
    wait_until(lambda: immortus.status(running).state is State.STARTED)
    demo_queue.stop()
    assert (immortus.status(running).state, immortus.status(running).attempts) == (
        State.CANCELLED,
        1,
    )
    assert (immortus.status(queued).state, immortus.status(queued).attempts) == (
        State.CANCELLED,
        0,
    )


def test_the_samples_run_on_huey_with_its_retries(
    make_queue: Callable[[Pace], DemoQueue],
) -> None:
    fast = make_queue(at_speed(50))
    jobs = {sample.slug: fast.enqueue(sample) for sample in SAMPLES if not sample.cancellable}
    fast.start()
    wait_until(lambda: all(immortus.status(job_id).completed for job_id in jobs.values()))
    for slug, job_id in jobs.items():
        sample, status = SAMPLES_BY_SLUG[slug], immortus.status(job_id)
        assert (status.state, status.attempts) == (sample.expected, sample.attempts), slug
        assert status.progress is not None
        assert status.progress.percent == sample.ends_at, slug
    failed = immortus.status(jobs["resize-images"]).error
    assert failed is not None
    assert failed.type == "immortus.demo.jobs.CorruptImage"


# -- the command ---------------------------------------------------------------------------


def command_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": SRC, "TMPDIR": str(tmp_path)}
    env.pop(STORE_ENV, None)
    return env


def test_the_smoke_run_sees_every_sample_end_as_expected(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "immortus", "demo", "--smoke"],
        capture_output=True,
        text=True,
        env=command_env(tmp_path),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "page: GET / 200, GET /immortus/immortus.js 200" in lines
    expected = {
        "import-rows": r"finished\s+attempts 1\s+progress 100 %",
        "resize-images": r"failed\s+attempts 1\s+progress 60 %",
        "build-report": r"cancelled\s+attempts 1\s+progress [\d.]+ %",
        "fetch-rates": r"finished\s+attempts 2\s+progress 100 %",
    }
    for slug, pattern in expected.items():
        assert any(re.match(rf"{slug}\s+{pattern}\s+as expected", line) for line in lines), slug
    assert "CorruptImage: photo_031.jpg is truncated" in result.stdout
    assert lines[-1] == "every sample ended as expected"
    assert list(tmp_path.iterdir()) == []  # its temporary folder is gone


def test_a_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    taken = listen("127.0.0.1", 0)
    with taken:
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 2
    assert main(["demo", "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert f"immortus: cannot listen on 127.0.0.1:{port}: the port is in use; pick another" in err
    assert "immortus: cannot listen on port 70000: a port is from 0 to 65535" in err
    assert "Traceback" not in err


def test_a_bad_store_stops_the_web_demo_before_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo", "--port", "0", "--store", "nope://x"]) == 2
    captured = capsys.readouterr()
    assert "no store handles nope://" in captured.err
    assert "open http" not in captured.out
    assert list(tmp_path.iterdir()) == []


def read_lines(stream: Any, into: queues.Queue[str]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


def next_line_with(lines: queues.Queue[str], prefix: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        if line.startswith(prefix):
            return line


def test_the_demo_serves_until_sigint_then_cleans_up(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "immortus", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=command_env(tmp_path),
    )
    lines: queues.Queue[str] = queues.Queue()
    threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        url = next_line_with(lines, "immortus demo: open ").split()[3]
        folder = Path(next_line_with(lines, "folder: ").removeprefix("folder: "))
        assert folder.parent == tmp_path
        assert folder.is_dir()
        with httpx.Client(base_url=url, timeout=10) as http:
            page = http.get("/")
            assert page.status_code == 200
            csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
            assert csrf is not None
            job = http.post("/jobs/build-report", json={}, headers={CSRF_HEADER: csrf.group(1)})
            assert job.status_code == 200
            info = job.json()
            # A job running and a stream open while the demo is stopped.
            stream_url = f"/immortus/stream/{info['job_id']}/{info['job_class']}"
            with http.stream("GET", stream_url, params={"token": info["token"]}) as stream:
                assert stream.status_code == 200
                frames = stream.iter_lines()
                while '"status":"started"' not in next(frames):
                    pass
                process.send_signal(signal.SIGINT)
                assert process.wait(timeout=60) == 0
        assert process.stderr is not None
        assert process.stderr.read() == ""
        assert next_line_with(lines, "demo stopped") == "demo stopped"
        assert not folder.exists()
        assert list(tmp_path.iterdir()) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_the_demo_package_and_terminal_demo_import_no_web_framework_or_queue() -> None:
    statement = "import immortus.demo, immortus.demo.samples, immortus.demo.terminal"
    assert modules_loaded_by(statement, ["huey", "starlette", "uvicorn"]) == []


@pytest.mark.parametrize("package", ["huey", "starlette", "uvicorn"])
def test_a_missing_package_of_the_demo_says_which_extra_to_install(
    package: str, tmp_path: Path
) -> None:
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "from immortus.cli import main\n"
        "sys.exit(main(['demo', '--port', '0']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=command_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"immortus: {package!r} is not installed; it is needed for this feature. "
        'Install it with: pip install "immortus[demo]"\n'
    )

"""``immortus dashboard``: loopback only without a token; with one, nothing without it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx

from immortus.cli import main
from immortus.cli.dashboard import build_app, is_loopback
from immortus.stores.memory import MemoryStore
from immortus.stores.sqlite import SQLiteStore
from tests.services.base import wait_until
from tests.web.servers import serve_asgi


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_refuses_a_public_address_without_a_token(capsys: object) -> None:
    assert main(["dashboard", "--host", "0.0.0.0"])  # noqa: S104 - refused == 2


def test_serves_only_with_the_token(tmp_path: Path) -> None:
    port = _free_port()
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert main(["dashboard", "--store", store, "--port", "1"]) == 2  # no such file: refused
    SQLiteStore.from_url(store).close()
    command = [sys.executable, "-m", "immortus", "dashboard", "--store", store]
    command += ["--port", str(port), "--token", "s3cret"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/login", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30.0, interval=0.1)
        assert httpx.get(f"{url}/").status_code == 403
        assert httpx.get(f"{url}/", headers={"Authorization": "Bearer wrong"}).status_code == 403
        good = httpx.get(f"{url}/", headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert "Overview" in good.text
        login = httpx.post(f"{url}/login", data={"token": "s3cret"})
        assert login.status_code == 303
        assert httpx.get(f"{url}/jobs", cookies=login.cookies).status_code == 200
    finally:
        process.terminate()
        process.wait(10)


def test_without_a_token_only_requests_addressed_to_loopback_are_served(
    store: MemoryStore,
) -> None:
    app = build_app(None)
    with serve_asgi(app) as url:  # type: ignore[arg-type]
        assert httpx.get(f"{url}/").status_code == 200
        rebound = httpx.get(f"{url}/", headers={"Host": "evil.example"})
        assert rebound.status_code == 403
        assert "done-1" not in rebound.text


def test_loopback_names() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "LOCALHOST")] == [
        True
    ] * 5
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "example.com", "", "::"))  # noqa: S104

"""Store URLs: schemes ignore case end to end, and no message ever shows a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from immortus.exceptions import ImmortusError, InvalidStoreURL, StoreUnavailable
from immortus.status import State
from immortus.stores import open_store
from immortus.stores.redis import RedisStore
from immortus.stores.sql import SQLStore
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import EventKind
from tests.services import free_port
from tests.stores.contract import event, known

SECRET = "s3cret-pw"  # noqa: S105 - the secret the messages must not show


def shout(url: str) -> str:
    """``url`` with its scheme in upper case."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.upper()}://{rest}"


def check_round_trip(url: str) -> None:
    """A store opened with an upper-case scheme shares its data with the lower-case one."""
    loud, quiet = open_store(shout(url)), open_store(url)
    try:
        loud.record(event(EventKind.STARTED, "shouted"))
        assert known(quiet, "shouted").state is State.STARTED
        assert type(loud) is type(quiet)
    finally:
        loud.close()
        quiet.close()


def test_upper_case_sqlite_scheme(tmp_path: Path) -> None:
    check_round_trip(f"sqlite:///{tmp_path}/jobs.sqlite3")


def test_upper_case_redis_scheme(redis_url: str) -> None:
    check_round_trip(redis_url)
    store = RedisStore(shout(redis_url))  # the class itself, not only open_store
    try:
        assert store.get("shouted") is not None
    finally:
        store.close()


def test_upper_case_postgresql_scheme(postgres_url: str) -> None:
    check_round_trip(postgres_url)
    store = SQLStore(shout(postgres_url))
    try:
        assert store.get("shouted") is not None
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    [
        f"user:{SECRET}@db/jobs",  # no scheme at all
        f"nosuch://user:{SECRET}@db/jobs",
        f"NOSUCH://user:{SECRET}@db/jobs",
        f"redis://:{SECRET}@localhost:99999/0",
        f"REDIS://:{SECRET}@localhost:99999/0",
        f"redis://:{SECRET}@localhost/0?socket_timeout=soon",
        f"postgresql://user:{SECRET}@db:notaport/jobs",
        f"postgresql://user@db/jobs?password={SECRET}&sslmode=nonsense&connect_timeout=x:y",
        f"sqlite://user:{SECRET}@host/jobs.db",
    ],
)
def test_a_refused_url_never_shows_its_password(url: str) -> None:
    def use() -> None:
        open_store(url).get("x")  # some drivers refuse a URL only when it is used

    with pytest.raises(ImmortusError) as caught:
        use()
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_a_url_for_another_store_never_shows_its_password() -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        SQLiteStore.from_url(f"redis://:{SECRET}@localhost/0")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "template",
    [
        "redis://:{secret}@127.0.0.1:{port}/0",
        "REDIS://user:{secret}@127.0.0.1:{port}/0",
        "postgresql://user:{secret}@127.0.0.1:{port}/jobs",
        "POSTGRESQL://user@127.0.0.1:{port}/jobs?password={secret}",
    ],
)
def test_an_unreachable_store_never_shows_its_password(template: str) -> None:
    store = open_store(template.format(secret=SECRET, port=free_port()))
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.record(event(EventKind.STARTED))
        assert SECRET not in str(caught.value)
        assert SECRET not in repr(store)
    finally:
        store.close()

"""The PostgreSQL index when its server drops connections or cannot be reached.

Found by the fault harness (bench/reliability, `postgres_restart`): after a PostgreSQL
restart every web thread's kept connection was dead, and each thread's next request was a
500 (`AdminShutdown` / "the connection is lost"). Now a connection found dead when a
transaction begins is replaced before anything runs, and an index that cannot be reached is
a 503 (`IndexUnavailable`), never a 500. The server is reached through the harness's fault
proxy, so the test PostgreSQL itself is never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from bench.reliability.proxy import FaultProxy
from indexer.errors import Unavailable
from indexer.service_db import ServiceDatabase
from indexer.store import IndexStore, open_index
from indexer.store.base import IndexUnavailable
from indexer.store.postgres import PostgresIndexStore


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[FaultProxy, str]]:
    address = postgres_url.split("@", 1)[1].split("/", 1)[0]
    host, port = address.rsplit(":", 1)
    proxy = FaultProxy(host, int(port)).start()
    try:
        yield proxy, postgres_url.replace(address, proxy.address)
    finally:
        proxy.close()


@pytest.fixture
def store(proxied: tuple[FaultProxy, str]) -> Iterator[IndexStore]:
    opened = open_index(proxied[1])
    try:
        yield opened
    finally:
        opened.close()


def test_a_dropped_connection_is_replaced_before_the_next_read(
    proxied: tuple[FaultProxy, str], store: IndexStore
) -> None:
    assert store.list_datasets() == []  # this thread now keeps a connection
    assert proxied[0].cut() >= 2  # the server side went away (a restart, a network cut)
    assert store.list_datasets() == []  # no error: replaced before anything ran


def test_a_server_that_cannot_be_reached_is_unavailable_not_an_error(
    proxied: tuple[FaultProxy, str], store: IndexStore
) -> None:
    proxy = proxied[0]
    assert store.list_datasets() == []
    proxy.set_mode("refuse")
    with pytest.raises(IndexUnavailable) as raised:
        store.list_datasets()
    assert raised.value.status == 503 and raised.value.code == "unavailable"
    proxy.set_mode("forward")
    assert store.list_datasets() == []  # back once the server is


def test_a_connection_lost_inside_a_transaction_is_unavailable(
    proxied: tuple[FaultProxy, str], store: IndexStore
) -> None:
    assert isinstance(store, PostgresIndexStore)
    assert store.list_datasets() == []
    with pytest.raises(IndexUnavailable), store._read() as conn:
        proxied[0].cut()
        conn.execute("SELECT 1")
    assert store.list_datasets() == []


def test_the_service_database_is_unavailable_while_the_server_is_down(
    proxied: tuple[FaultProxy, str],
) -> None:
    proxy, url = proxied
    database = ServiceDatabase(url)
    proxy.set_mode("refuse")
    with pytest.raises(Unavailable), database._connection():
        pass
    proxy.set_mode("forward")
    with database._connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert isinstance(conn, psycopg.Connection)

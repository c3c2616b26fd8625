"""Tests for the throwaway PostgreSQL helper (tests/support/postgres.py).

These deliberately fail rather than skip when the server binaries are missing:
CI installs them (`apt-get install postgresql` in .ci/run).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from support.postgres import PostgresServer, find_binaries


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    # One server for the module keeps the suite fast (initdb dominates the cost).
    with PostgresServer(tmp_path_factory.mktemp("pg")) as server:
        yield server


def test_binaries_are_installed() -> None:
    bins = find_binaries()
    for binary in (bins.initdb, bins.pg_ctl, bins.postgres):
        assert binary.is_file(), binary


def test_missing_binaries_raise_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="apt-get install postgresql"):
        find_binaries(lib_root=tmp_path / "nope", path=str(tmp_path))


def test_url_and_dsn(pg: PostgresServer) -> None:
    assert pg.url("app") == f"postgresql+psycopg://watchword@127.0.0.1:{pg.port}/app"
    assert pg.url(driver="postgresql") == f"postgresql://watchword@127.0.0.1:{pg.port}/postgres"
    assert f"port={pg.port}" in pg.dsn("app")
    assert "dbname=app" in pg.dsn("app")


def test_create_database_and_query(pg: PostgresServer) -> None:
    url = pg.create_database("crud_db")
    assert url.endswith(f":{pg.port}/crud_db")
    with psycopg.connect(pg.dsn("crud_db")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
        conn.execute("CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO users (name) VALUES (%s), (%s)", ("alice", "bob"))
        rows = conn.execute("SELECT name FROM users ORDER BY id").fetchall()
    assert rows == [("alice",), ("bob",)]


def test_listens_only_on_loopback(pg: PostgresServer) -> None:
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == (str(pg.cluster_dir),)


def test_stop_then_start_keeps_data(pg: PostgresServer) -> None:
    pg.create_database("durable_db")
    with psycopg.connect(pg.dsn("durable_db")) as conn:
        conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v text)")
        conn.execute("INSERT INTO kv VALUES ('answer', '42')")

    first_pid = pg.pid
    assert first_pid is not None
    pg.stop()
    assert pg.pid is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.dsn("durable_db"), connect_timeout=2)

    pg.start()
    assert pg.pid is not None
    assert pg.pid != first_pid
    with psycopg.connect(pg.dsn("durable_db")) as conn:
        assert conn.execute("SELECT v FROM kv WHERE k = 'answer'").fetchone() == ("42",)

    pg.restart()
    with psycopg.connect(pg.dsn("durable_db")) as conn:
        assert conn.execute("SELECT count(*) FROM kv").fetchone() == (1,)


def test_stop_kills_a_hung_server_and_start_recovers(pg: PostgresServer) -> None:
    # A SIGSTOPped postmaster ignores pg_ctl stop, forcing the SIGKILL fallback.
    pg.create_database("hung_db")
    with psycopg.connect(pg.dsn("hung_db"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (7)")
    pid = pg.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    pg.stop_timeout, old_timeout = 1.0, pg.stop_timeout
    try:
        pg.stop()
    finally:
        pg.stop_timeout = old_timeout
    assert pg.pid is None

    pg.start()  # crash recovery replays the WAL
    with psycopg.connect(pg.dsn("hung_db")) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(7,)]


def test_freeze_stops_backends_forked_while_it_scans(pg: PostgresServer) -> None:
    # Connections opened during the freeze make the postmaster fork backends while the scan runs: each
    # must end stopped too, or one live backend answers during the "hang" (the S8 test saw that once).
    # The newest connections stay open, so a backend that escaped would still be alive at the check.
    stop = threading.Event()
    opened: deque[psycopg.Connection[tuple[object, ...]]] = deque()

    def connect_in_a_loop() -> None:
        while not stop.is_set():
            try:
                opened.append(psycopg.connect(pg.dsn(), connect_timeout=1))
            except psycopg.OperationalError:
                continue
            if len(opened) > 20:
                opened.popleft().close()

    openers = [threading.Thread(target=connect_in_a_loop) for _ in range(4)]
    for opener in openers:
        opener.start()
    try:
        for _ in range(10):
            time.sleep(0.1)
            pg.freeze()
            try:
                assert pg.running() == {}
            finally:
                pg.thaw()
    finally:
        stop.set()
        for opener in openers:
            opener.join(timeout=10)
        for connection in opened:
            connection.close()
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

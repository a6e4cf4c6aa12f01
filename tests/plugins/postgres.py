"""A real PostgreSQL server on 127.0.0.1, and a ledger URL per test on each backend.

`postgres_url` starts one server per session from the newest PostgreSQL installed under
/usr/lib/postgresql; `ledger_url` runs a test twice, on a fresh SQLite file and on a fresh
schema of that server (CREATE SCHEMA takes a millisecond, CREATE DATABASE half a second).
`running_postgres` is also what `bench/ledger.py` starts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

PG_ROOT = Path("/usr/lib/postgresql")
PG_USER = "kapsa"
#: The account the server runs as when the tests run as root (postgres refuses root).
SERVER_ACCOUNT = "postgres"


def pg_bin() -> Path:
    """The bin directory of the newest PostgreSQL installed."""
    versions = [p for p in PG_ROOT.glob("*/bin") if (p / "pg_ctl").exists()]
    if not versions:
        raise RuntimeError(f"no PostgreSQL under {PG_ROOT}; install the postgresql package")
    return max(versions, key=lambda p: tuple(int(x) for x in p.parent.name.split(".")))


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_server_account(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_ACCOUNT, "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def running_postgres(*, durable: bool = False) -> Iterator[str]:
    """A throw-away server; yields `postgresql+psycopg://kapsa@127.0.0.1:PORT` (no database).

    TCP on 127.0.0.1 only, no Unix socket, trust auth for the one local user. `durable=False`
    turns fsync off: the tests kill clients, never the server, so they lose nothing by it.
    """
    bindir = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="kapsa-pg-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, user=SERVER_ACCOUNT, group=SERVER_ACCOUNT)
    port = _free_port()
    try:
        subprocess.run(
            _as_server_account(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    PG_USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": "''",
            "max_connections": "300",
            "fsync": "on" if durable else "off",
            "synchronous_commit": "on" if durable else "off",
            "full_page_writes": "on" if durable else "off",
        }
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        subprocess.run(
            _as_server_account(
                [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"]
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}"
        finally:
            subprocess.run(
                _as_server_account(
                    [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
                ),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_database(server_url: str, name: str) -> str:
    """CREATE DATABASE `name` on the server; returns its SQLAlchemy URL."""
    with psycopg.connect(f"{_libpq(server_url)}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{server_url}/{name}"


def create_schema(database_url: str, name: str) -> str:
    """CREATE SCHEMA `name`; returns a URL whose connections see only that schema."""
    with psycopg.connect(_libpq(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return f"{database_url}?options=-csearch_path%3D{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The session's server, as a URL without a database."""
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> str:
    """A database named `kapsa` on the session's server."""
    return create_database(postgres_server, "kapsa")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty ledger location: a new SQLite file, or a new schema on the shared server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    database: str = request.getfixturevalue("postgres_url")
    return create_schema(database, f"ledger_{uuid.uuid4().hex[:12]}")

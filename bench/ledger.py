"""Ledger figures: appends against raw sqlite3, and history latency at a million rows.

    .venv/bin/python -m bench.ledger [--appends 2000] [--rows 1000000] [--queries 1000]
                                     [--postgres-url URL | --no-postgres]

Goals: appends through Ledger.append within 2x of raw sqlite3 doing the same inserts with the
same pragmas (WAL, synchronous=FULL, one commit per transition); history p99 under 5 ms at
1,000,000 rows. Without --postgres-url a throw-away PostgreSQL is started (fsync on), the
way the tests start theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy

from bench._harness import Report, command_line, load
from bench._harness import machine as host_machine
from kapsa.ledger import Entry, Ledger

T0 = datetime(2025, 1, 1, tzinfo=UTC)
PROJECTS, ENVIRONMENTS = 100, 10  # 1,000 environments share the rows
COLUMNS = ", ".join(f'"{name}"' for name in Entry.__dataclass_fields__)
PLACEHOLDERS = ", ".join("?" * len(Entry.__dataclass_fields__))
INSERT = (
    f"INSERT INTO transitions ({COLUMNS}) VALUES ({PLACEHOLDERS}) ON CONFLICT (uid, seq) DO NOTHING"
)
LAST_50 = (
    f"SELECT id, {COLUMNS} FROM transitions WHERE project = {{p}} AND kind = 'Environment'"
    " AND name = {p} ORDER BY at DESC, id DESC LIMIT 50"
)


def machine() -> str:
    return (
        f"{host_machine()}; SQLite {sqlite3.sqlite_version}, "
        f"SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}"
    )


def transition(i: int) -> Entry:
    """Row i of the synthetic ledger: environments take turns, a second apart."""
    env = i % (PROJECTS * ENVIRONMENTS)
    project = f"project-{env // ENVIRONMENTS}"
    return Entry(
        at=T0 + timedelta(seconds=i),
        kind="Environment",
        namespace="team",
        name=f"{project}-env-{env % ENVIRONMENTS}",
        project=project,
        uid=f"uid-{env}",
        seq=i // (PROJECTS * ENVIRONMENTS) + 1,
        from_state="Deploying",
        to_state="Running",
        trigger="ready",
        reason="PodsReady",
        message="all pods ready",
        commit=f"{i:040x}",
        image=f"registry.local/{project}@sha256:{i:064x}",
        generation=i,
        source="poll",
    )


def sqlite_row(entry: Entry) -> tuple[Any, ...]:
    """The row as raw sqlite3 stores it: naive UTC text, as the ledger's column type writes it."""
    row = astuple(entry)
    return (entry.at.replace(tzinfo=None).isoformat(sep=" "), *row[1:])


def raw_sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def bench_appends(workdir: Path, count: int) -> None:
    """Rounds alternate between the two so that a noisy neighbour hurts both alike."""
    ledger = Ledger.open(f"sqlite:///{workdir / 'appends-ledger.db'}")
    Ledger.open(f"sqlite:///{workdir / 'appends-raw.db'}").close()
    raw = raw_sqlite(workdir / "appends-raw.db")
    rounds, spent = 4, {"ledger": 0.0, "raw": 0.0}
    entries = [transition(i) for i in range(count)]
    for r in range(rounds):
        chunk = entries[r * count // rounds : (r + 1) * count // rounds]
        start = time.perf_counter()
        for entry in chunk:
            raw.execute(INSERT, sqlite_row(entry))
            raw.commit()
        spent["raw"] += time.perf_counter() - start
        start = time.perf_counter()
        for entry in chunk:
            ledger.append(entry)
        spent["ledger"] += time.perf_counter() - start
    ledger.close()
    raw.close()
    ledger_rate, raw_rate = count / spent["ledger"], count / spent["raw"]
    print(f"appends, one commit each, WAL + synchronous=FULL ({count} rows):")
    print(f"  raw sqlite3     {raw_rate:8.0f} rows/s")
    print(f"  Ledger.append   {ledger_rate:8.0f} rows/s")
    verdict = "within" if raw_rate / ledger_rate <= 2 else "NOT within"
    print(f"  raw/ledger      {raw_rate / ledger_rate:8.2f}x   ({verdict} the 2x goal)")


def timings(run: Callable[[int], object], *, queries: int) -> str:
    """p50 / p99 in ms over `queries` calls on random environments, after a warm-up."""
    picks = [random.randrange(PROJECTS * ENVIRONMENTS) for _ in range(queries + 50)]
    samples = []
    for n, env in enumerate(picks):
        start = time.perf_counter()
        run(env)
        if n >= 50:
            samples.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49]:6.3f} ms   p99 {cuts[98]:6.3f} ms"


def report(label: str, run: Callable[[int], object], *, queries: int) -> None:
    print(f"  {label:<52} {timings(run, queries=queries)}")


def names(env: int) -> tuple[str, str]:
    project = f"project-{env // ENVIRONMENTS}"
    return project, f"{project}-env-{env % ENVIRONMENTS}"


def ledger_queries(ledger: Ledger, *, rows: int, queries: int) -> None:
    def last_50(env: int) -> object:
        project, name = names(env)
        return ledger.history(project=project, environment=name, limit=50)

    end = T0 + timedelta(seconds=rows)

    def last_hour(env: int) -> object:
        project, name = names(env)
        return ledger.history(
            project=project, environment=name, since=end - timedelta(hours=1), until=end
        )

    def project_50(env: int) -> object:
        return ledger.history(project=names(env)[0], limit=50)

    report("Ledger.history(project, environment, limit=50)", last_50, queries=queries)
    report("Ledger.history(project, environment, last hour)", last_hour, queries=queries)
    report("Ledger.history(project, limit=50)", project_50, queries=queries)


def bench_sqlite_history(workdir: Path, *, rows: int, queries: int) -> None:
    path = workdir / "history.db"
    Ledger.open(f"sqlite:///{path}").close()
    conn = raw_sqlite(path)
    start = time.perf_counter()
    conn.execute("PRAGMA synchronous=OFF")  # loading only; the ledger itself always runs FULL
    batch = 50_000
    for first in range(0, rows, batch):
        conn.executemany(
            INSERT, (sqlite_row(transition(i)) for i in range(first, min(first + batch, rows)))
        )
    conn.commit()
    conn.execute("PRAGMA synchronous=FULL")
    print(f"history on SQLite, {rows:,} rows (loaded in {time.perf_counter() - start:.1f} s):")
    query = LAST_50.format(p="?")

    def raw_last_50(env: int) -> object:
        return conn.execute(query, names(env)).fetchall()

    report("raw sqlite3, same query as limit=50 below", raw_last_50, queries=queries)
    with Ledger.open(f"sqlite:///{path}") as ledger:
        ledger_queries(ledger, rows=rows, queries=queries)
    conn.close()


@contextmanager
def postgres_database(url: str | None) -> Iterator[str]:
    """The given database, or one on a throw-away server started as the tests start theirs."""
    if url is not None:
        yield url
        return
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:  # run as `python bench/ledger.py`
        sys.path.insert(0, root)
    from tests.plugins.postgres import create_database, running_postgres  # noqa: PLC0415

    with running_postgres(durable=True) as server:
        yield create_database(server, "bench")


def bench_postgres_history(url: str, *, rows: int, queries: int) -> None:
    ledger = Ledger.open(url)
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    start = time.perf_counter()
    with psycopg.connect(libpq) as conn:
        conn.execute("TRUNCATE transitions")
        with conn.cursor().copy(f"COPY transitions ({COLUMNS}) FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row(astuple(transition(i)))
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE transitions")  # what autovacuum does shortly after a load
        version = conn.execute("SHOW server_version").fetchone()
        print(
            f"history on PostgreSQL {version[0] if version else '?'}, {rows:,} rows "
            f"(loaded with COPY in {time.perf_counter() - start:.1f} s):"
        )
        query = LAST_50.format(p="%s")

        def raw_last_50(env: int) -> object:
            return conn.execute(query, names(env)).fetchall()

        report("raw psycopg, same query as limit=50 below", raw_last_50, queries=queries)
        ledger_queries(ledger, rows=rows, queries=queries)
    ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--appends", type=int, default=2000, help="rows appended one by one")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the history table")
    parser.add_argument("--queries", type=int, default=1000, help="queries per measurement")
    parser.add_argument("--postgres-url", help="an existing PostgreSQL database to fill")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    random.seed(7)
    report = Report()
    with contextlib.redirect_stdout(_Tee(report)):
        _run(args)
    report.write_section(
        "ledger",
        "The audit ledger (bench/ledger.py)",
        intro="Goals: appends within 2x of raw sqlite3 doing the same work; history p99 under "
        "5 ms at 1,000,000 rows.",
    )


class _Tee(io.TextIOBase):
    """Everything printed goes to the terminal and, line by line, into the report."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.terminal = sys.stdout
        self.partial = ""

    def write(self, text: str) -> int:
        self.terminal.write(text)
        self.terminal.flush()
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        self.report.lines.extend(lines)
        return len(text)


def _run(args: argparse.Namespace) -> None:
    print(f"command: {command_line()}")
    print(machine())
    print(f"at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="kapsa-bench-") as tmp:
        bench_appends(Path(tmp), args.appends)
        bench_sqlite_history(Path(tmp), rows=args.rows, queries=args.queries)
    if not args.no_postgres:
        with postgres_database(args.postgres_url) as url:
            bench_postgres_history(url, rows=args.rows, queries=args.queries)
    print("goal: history p99 under 5 ms at 1,000,000 rows")


if __name__ == "__main__":
    main()

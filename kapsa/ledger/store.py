"""The ledger: append a transition once, answer history, deployments and why."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from kapsa.api.project import namespace_of
from kapsa.errors import LedgerError
from kapsa.ledger import migrate
from kapsa.ledger.deployments import deployments_from
from kapsa.ledger.engine import make_engine, sqlite_path, writing
from kapsa.ledger.records import Deployment, Entry
from kapsa.ledger.schema import transitions

#: Where the operator keeps its ledger unless told otherwise.
DEFAULT_URL = "sqlite:////var/lib/kapsa/ledger.db"

_PROJECT = "Project"
_ENVIRONMENT = "Environment"


def _safe(url: str) -> str:
    """The URL for messages, without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "<unparsable URL>"


@contextmanager
def _translated(doing: str) -> Iterator[None]:
    """Callers catch LedgerError, whatever the driver raised underneath."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise LedgerError(f"could not {doing}: {exc}") from exc


def _insert_once(engine: Engine) -> Insert:
    """INSERT that skips a (uid, seq) already there, so a retried step writes its row once.

    RETURNING tells whether the row went in: rowcount is not reliable across drivers here.
    """
    keys = ["uid", "seq"]
    if engine.dialect.name == "postgresql":
        insert: Insert = postgresql.insert(transitions).on_conflict_do_nothing(index_elements=keys)
    else:
        insert = sqlite.insert(transitions).on_conflict_do_nothing(index_elements=keys)
    return insert.returning(transitions.c.id)


def _owned_by(project: str) -> ColumnElement[bool]:
    """The rows that are `project`'s: its own (cluster-scoped, no namespace) and those of
    Environments in the namespace it owns.

    `project` on a row is what the Environment claimed (`spec.project`), which anyone who can
    create an Environment anywhere can set. Before the operator refused such claims (issue #14),
    an Environment in another team's namespace naming a Project had its rows written under
    that Project; those rows, and any a future bug might write, stay out of its answers.
    """
    kind, namespace = transitions.c.kind, transitions.c.namespace
    return or_(
        and_(kind == _PROJECT, transitions.c.name == project, namespace.is_(None)),
        and_(kind == _ENVIRONMENT, namespace == namespace_of(project)),
    )


#: The columns of an Entry, in its field order: rows become Entries positionally (fast).
_ENTRY = tuple(transitions.c[field.name] for field in fields(Entry))


def _entry(row: Sequence[Any]) -> Entry:
    return Entry(*row)


class Ledger:
    """The audit ledger over any SQLAlchemy URL (SQLite file or PostgreSQL); thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writing(engine)
        self._insert = _insert_once(engine)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Ledger:
        """Open the ledger at `url`, creating or upgrading its schema.

        `create=False` is for readers (the CLI): they must not leave an empty ledger behind a
        mistyped path, nor migrate a schema under a running operator, so a missing file or
        schema is an error instead.
        """
        path = sqlite_path(url)
        if path is not None and not create and not path.exists():
            raise LedgerError(f"no ledger at {path}")
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            engine = make_engine(url)
        except (SQLAlchemyError, OSError) as exc:
            raise LedgerError(f"cannot open the ledger at {_safe(url)}: {exc}") from exc
        try:
            with _translated(f"open the ledger at {_safe(url)}"):
                if create:
                    migrate.upgrade(engine)
                else:
                    migrate.check(engine)
        except LedgerError:
            engine.dispose()
            raise
        return cls(engine)

    def append(self, entry: Entry) -> bool:
        """Record a transition; False if (uid, seq) is already recorded.

        One transaction per call: when it returns the row is committed (and, on SQLite with
        synchronous=FULL, on disk), so status may then claim the transition happened.
        """
        if entry.at.tzinfo is None:
            raise LedgerError(f"transition {entry.uid}#{entry.seq} has a naive time; give UTC")
        doing = f"append transition {entry.uid}#{entry.seq}"
        with _translated(doing), self._writer.begin() as conn:
            inserted = conn.execute(self._insert, vars(entry)).first()  # asdict deep-copies: slower
        return inserted is not None

    def last_seq(self, uid: str) -> int:
        """The highest seq recorded for the object, 0 if none: where a restart resumes."""
        query = select(func.max(transitions.c.seq)).where(transitions.c.uid == uid)
        with _translated(f"read the last seq of {uid}"), self._engine.connect() as conn:
            value = conn.execute(query).scalar()
        return int(value) if value is not None else 0

    def history(
        self,
        *,
        project: str,
        environment: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        """Transitions oldest first by time (then by append order), both bounds inclusive.

        Ordered by `at` rather than by id so that rows written late (those a restarted
        reconciler records for transitions status already shows) land where they happened.
        environment=None: the Project's own rows and all its environments'. `limit` keeps the
        newest rows (the last `limit`), still returned oldest first. Only rows the Project owns
        count (see _owned_by): every reader of a Project's history goes through here.
        """
        query = self._select(project=project, environment=environment, since=since, until=until)
        at, row_id = transitions.c.at, transitions.c.id
        if limit is not None:
            query = query.order_by(at.desc(), row_id.desc()).limit(limit)
        else:
            query = query.order_by(at, row_id)
        with _translated(f"read the history of {project}"), self._engine.connect() as conn:
            rows = [_entry(row) for row in conn.execute(query).all()]
        return rows[::-1] if limit is not None else rows

    def deployments(self, *, project: str, environment: str) -> list[Deployment]:
        """Each image that reached Running in the environment, oldest first, from when to when."""
        return deployments_from(self.history(project=project, environment=environment))

    def at(self, *, project: str, environment: str, when: datetime) -> Deployment | None:
        """What ran in the environment at `when`, as the ledger knew it then; None if nothing.

        Only transitions up to `when` are read, so `ended` is None and `ready` is the readiness
        at that moment; `entry` is the transition that put the image there.
        """
        entries = self.history(project=project, environment=environment, until=when)
        running = [d for d in deployments_from(entries) if d.ended is None]
        return running[-1] if running else None

    def last_move_to(self, *, project: str, environment: str, state: str) -> Entry | None:
        """The newest transition of the environment into `state`, across its incarnations.

        What previews remember by: an environment that expired at a commit is deleted and may
        be recreated under the same name, and the ledger is the one record of its expiry that
        no lost status write, status rewrite or restore from backup can take away.
        """
        query = (
            self._select(project=project, environment=environment, since=None, until=None)
            .where(transitions.c.to_state == state)
            .order_by(transitions.c.at.desc(), transitions.c.id.desc())
            .limit(1)
        )
        with _translated(f"read the history of {environment}"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return _entry(row) if row is not None else None

    def why(self, *, uid: str) -> Entry | None:
        """The last transition of an object: why it is in the state it is in."""
        query = (
            select(*_ENTRY)
            .where(transitions.c.uid == uid)
            .order_by(transitions.c.seq.desc())
            .limit(1)
        )
        with _translated(f"read the last transition of {uid}"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return _entry(row) if row is not None else None

    def close(self) -> None:
        """Close every pooled connection; the ledger is unusable afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _select(
        *,
        project: str,
        environment: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> Select[Any]:
        query = select(*_ENTRY).where(transitions.c.project == project, _owned_by(project))
        if environment is not None:
            query = query.where(
                transitions.c.kind == _ENVIRONMENT, transitions.c.name == environment
            )
        if since is not None:
            query = query.where(transitions.c.at >= since)
        if until is not None:
            query = query.where(transitions.c.at <= until)
        return query

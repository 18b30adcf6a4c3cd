"""Connections that cannot write: what every read-only command and the dashboard open.

SQLite is read without creating anything beside the file (``sqlite_reader``: ``immutable=1``
while no writer is at work, ``mode=ro`` while one is), so a reader works on a read-only mount
and leaves no ``-wal``/``-shm`` files behind; other databases get read-only sessions that are
never committed. No optuna import here: the dashboard's read path stays light.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tuner._errors import BadInput
from tuner._secrets import redact


def _sqlite_path(url: str) -> str | None:
    """The file behind an SQLite URL (None for another database); ``BadInput`` for an
    in-memory one or a file that does not exist (a reader never creates one)."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    db = u.database or ""
    if db in ("", ":memory:"):
        raise BadInput("storage", "an in-memory SQLite database cannot be opened by another "
                       "process; give a file (sqlite:///PATH)")
    if db.startswith("file:"):
        db = db[len("file:"):].partition("?")[0]
    path = Path(db).expanduser().resolve()
    if not path.is_file():
        raise BadInput("storage", f"no database file at {path}")
    return str(path)


def sqlite_reader(path: str) -> Callable[[], sqlite3.Connection]:
    """A connection factory that reads ``path`` without writing to its folder.

    SQLite's ``mode=ro`` still creates the ``-wal`` and ``-shm`` files beside a WAL database
    and leaves them behind (and fails where the folder is read-only). So: while a ``-wal``
    file exists a writer is (or was) at work and its files are there already: read with
    ``mode=ro``, which sees its latest commits; otherwise nothing is writing: read with
    ``immutable=1``, which creates nothing. Each connection decides afresh, so a reader that
    outlives its first look (the dashboard) sees a runner that starts later.
    """
    uri_path = urllib.parse.quote(path)

    def connect() -> sqlite3.Connection:
        mode = "mode=ro" if Path(path + "-wal").exists() else "immutable=1"
        return sqlite3.connect(f"file:{uri_path}?{mode}", uri=True, timeout=10,
                               check_same_thread=False)

    return connect


def readonly_engine_kwargs(url: str) -> tuple[str, dict[str, Any]]:
    """``(url, create_engine keyword arguments)`` of an engine that cannot write: SQLite
    through ``sqlite_reader``; other databases through read-only sessions
    (``make_sessions_readonly``). No pool: every connection is made afresh."""
    path = _sqlite_path(url)
    if path is None:
        return url, {"poolclass": sa.pool.NullPool}
    return "sqlite://", {"creator": sqlite_reader(path), "poolclass": sa.pool.NullPool}


def readonly_url(url: str) -> str:
    """``url`` as SQLite's read-only URI (``sqlite:///file:PATH?mode=ro&uri=true``); other
    URLs unchanged. For tools that take a URL; ``readonly_engine_kwargs`` creates nothing."""
    path = _sqlite_path(url)
    if path is None:
        return url
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def make_sessions_readonly(engine: sa.Engine) -> None:
    """Make every server-side session read-only, so a stray write fails loudly."""
    dialect = engine.dialect.name
    statement = {
        "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "mysql": "SET SESSION TRANSACTION READ ONLY",
        "mariadb": "SET SESSION TRANSACTION READ ONLY",
    }.get(dialect)
    if statement is None:
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(statement)
        cur.close()
        if dialect == "postgresql":
            dbapi_conn.commit()  # ends the implicit transaction that SET opened


def open_readonly(url: str) -> sa.Engine:
    """A SQLAlchemy engine on ``url`` that cannot write (and creates no file)."""
    try:
        engine_url, kwargs = readonly_engine_kwargs(url)
        engine = sa.create_engine(engine_url, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise BadInput("storage", f"{redact(url)!r}: {str(exc).splitlines()[0]}") from None
    make_sessions_readonly(engine)
    return engine


__all__ = ["make_sessions_readonly", "open_readonly", "readonly_engine_kwargs", "readonly_url",
           "sqlite_reader"]

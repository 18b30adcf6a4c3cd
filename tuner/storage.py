"""Where studies live: Optuna's RDB storage through SQLAlchemy, plus the evaluation cache.

The embedded default is an SQLite file (``~/.tuner/tuner.db``; ``TUNER_STORAGE`` or
``--storage`` override it with any SQLAlchemy URL). The runner is the only writer.

Two ways in: ``open_rdb`` for the commands that write (it creates the file, its folder and the
tables), ``open_rdb_readonly`` for those that only read (``show``, ``pareto``, ``export``): it
never writes and never creates a file or a folder, so it also works on a read-only mount.
``storage_error`` turns what a database driver raises into one line (a corrupt file, a file
that is not a database, a full disk, a schema older than the installed Optuna).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa

from tuner._errors import BadInput
from tuner._evaluator import EvalResult
from tuner._secrets import SECRET_KEY_PATTERN, redact, redact_secrets
from tuner._storage_errors import storage_error

ENV_VAR = "TUNER_STORAGE"
DEFAULT_PATH = Path("~/.tuner/tuner.db")


def storage_url(url: str | None = None, create: bool = True) -> str:
    """``url``, else ``$TUNER_STORAGE``, else the embedded SQLite file; ``create``: make the
    SQLite file's folder (the writing commands do, the reading ones must not)."""
    url = url or os.environ.get(ENV_VAR)
    if not url:
        path = DEFAULT_PATH.expanduser()
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in url:
        raise BadInput("storage", f"{redact(url)!r} is not an SQLAlchemy URL "
                       "(e.g. sqlite:///tuner.db, postgresql+psycopg://user@host/db)")
    if url.startswith("sqlite:///") and create:
        folder = Path(url[len("sqlite:///"):]).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput("storage", f"cannot create the folder {folder}: "
                           f"{exc.strerror or exc}") from None
    return url


def _tune_sqlite(engine: sa.Engine) -> None:
    # WAL: readers (the dashboard) never block the writer; NORMAL: commits survive a killed
    # process (not a power cut) without an fsync each, which is most of plain SQLite's cost.
    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    engine.dispose()


def open_rdb(url: str | None = None, heartbeat_interval: int | None = None,
             grace_period: int | None = None, attempts: int = 5) -> optuna.storages.RDBStorage:
    """The storage for a command that writes (creates the SQLite file and the tables).

    Processes that open a new database at the same moment (two runs, a run and a reader)
    race to create Optuna's tables; the loser retries, as the tables exist a moment later.
    """
    for attempt in range(attempts):
        try:
            return _open_rdb(url, heartbeat_interval, grace_period)
        except Exception as exc:
            if attempt == attempts - 1 or not _creation_race(exc):
                raise
            time.sleep(0.1 * (attempt + 1) * (1 + random.random()))  # out of lock-step
    raise AssertionError("unreachable")


def _open_rdb(url: str | None, heartbeat_interval: int | None,
              grace_period: int | None) -> optuna.storages.RDBStorage:
    url = storage_url(url)
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        kwargs.update(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                      heartbeat_stale_trial_callback=(
                          optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)))
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):].partition("?")[0]).expanduser()
        if path.is_dir():
            raise BadInput("storage", f"{path} is a folder, not a database file")
    try:
        rdb = optuna.storages.RDBStorage(url, skip_compatibility_check=False, **kwargs)
        if rdb.engine.dialect.name == "sqlite":
            _tune_sqlite(rdb.engine)
        EvalCache.create_table(rdb.engine)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise BadInput("storage", f"{redact(url)!r}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        if _creation_race(exc):  # processes creating the tables together: open_rdb retries
            raise
        err = storage_error(exc, url)
        if err is None:
            raise
        raise err from None
    return rdb


def _creation_race(exc: BaseException) -> bool:
    """Two processes creating the same tables at once (PostgreSQL reports a duplicate type or
    key, SQLite "table ... already exists", a duplicate version row, or "database is locked"
    when two connections both wait to write): not a fault of the storage, the table exists a
    moment later."""
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, (sa.exc.IntegrityError, sa.exc.ProgrammingError)) or (
                isinstance(e, sa.exc.OperationalError)
                and ("already exists" in str(e) or "database is locked" in str(e))):
            return True
        e = e.__cause__
    return False


def open_rdb_readonly(url: str | None = None) -> optuna.storages.RDBStorage:
    """The storage for a command that only reads: never writes, never creates a file or a
    folder (SQLite is opened read-only, ``tuner._readonly_storage.sqlite_reader``)."""
    from tuner._readonly_engine import make_sessions_readonly, readonly_engine_kwargs

    url = storage_url(url, create=False)
    try:
        engine_url, kwargs = readonly_engine_kwargs(url)
        rdb = optuna.storages.RDBStorage(engine_url, engine_kwargs=kwargs,
                                         skip_table_creation=True,
                                         skip_compatibility_check=True)
        make_sessions_readonly(rdb.engine)
        rdb._version_manager.check_table_schema_compatibility()
        rdb.get_all_studies()  # a database without Optuna's tables fails here, not later
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise BadInput("storage", f"{redact(url)!r}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        err = storage_error(exc, url)
        if err is None:
            raise
        raise err from None
    return rdb


def create_tables(meta: sa.MetaData, engine: sa.Engine) -> None:
    """``create_all`` that tolerates another process creating the same tables meanwhile
    (workers starting together on a fresh database race between the check and the CREATE)."""
    try:
        meta.create_all(engine, checkfirst=True)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
        meta.create_all(engine, checkfirst=True)  # now they exist; a real problem raises again


class EvalCache:
    """Results by (config, evaluator fingerprint), shared by every study in the database."""

    _meta = sa.MetaData()
    table = sa.Table(
        "tuner_eval_cache", _meta,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), index=True, nullable=False),
        sa.Column("evaluator", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result_json", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )

    def __init__(self, engine: sa.Engine, fingerprint: str, evaluator: str) -> None:
        self.engine, self.fingerprint, self.evaluator = engine, fingerprint, evaluator
        self._mem: dict[str, EvalResult] = {}

    @classmethod
    def create_table(cls, engine: sa.Engine) -> None:
        create_tables(cls._meta, engine)

    def load(self) -> int:
        """Read every cached result of this fingerprint into memory."""
        q = sa.select(self.table.c.key, self.table.c.result_json).where(
            self.table.c.fingerprint == self.fingerprint)
        with self.engine.connect() as conn:
            for key, raw in conn.execute(q):
                self._mem[key] = EvalResult.from_json(json.loads(raw))
        return len(self._mem)

    def get(self, key: str, refresh: bool = False) -> EvalResult | None:
        hit = self._mem.get(key)
        if hit is None and refresh:  # another worker may have stored it meanwhile
            q = sa.select(self.table.c.result_json).where(self.table.c.key == key)
            with self.engine.connect() as conn:
                raw = conn.execute(q).scalar()
            if raw is not None:
                hit = self._mem[key] = EvalResult.from_json(json.loads(raw))
        return hit

    def row(self, key: str, result: EvalResult) -> dict[str, Any]:
        """Remember ``result`` and return the row to insert (in the trial's transaction)."""
        self._mem[key] = result
        return {"key": key, "fingerprint": self.fingerprint, "evaluator": self.evaluator,
                "status": result.status.value,
                "result_json": json.dumps(result.to_json(artifacts=True), default=str),
                "created": time.time()}

    def put(self, key: str, result: EvalResult) -> None:
        """Store one result now (shared-storage workers; may race another worker: ignored)."""
        row = self.row(key, result)
        try:
            with self.engine.begin() as conn:
                conn.execute(self.table.insert().values(**row))
        except sa.exc.IntegrityError:
            pass

    def __contains__(self, key: str) -> bool:
        return key in self._mem


def study_names(url: str | None = None) -> list[str]:
    rdb = open_rdb_readonly(url)
    return [s.study_name for s in rdb.get_all_studies()]


def load_study(name: str, url: str | None = None, readonly: bool = True) -> optuna.Study:
    """A stored study by name (read-only unless ``readonly`` is false); ``UnknownName``
    lists the stored names."""
    rdb = open_rdb_readonly(url) if readonly else open_rdb(url)
    try:
        return optuna.load_study(study_name=name, storage=rdb)
    except KeyError:
        names = [s.study_name for s in rdb.get_all_studies()]
        from tuner._errors import UnknownName

        raise UnknownName("study", name, names) from None


def copy_trials(trials: Iterable[optuna.trial.FrozenTrial], study: optuna.Study) -> None:
    study.add_trials(list(trials))


#: ``redact``, ``redact_secrets`` and ``SECRET_KEY_PATTERN`` live in ``tuner._secrets`` and stay
#: importable from here (``tuner.storage.redact_secrets`` is the documented name)
__all__ = ["DEFAULT_PATH", "ENV_VAR", "EvalCache", "SECRET_KEY_PATTERN", "copy_trials",
           "create_tables", "load_study", "open_rdb", "open_rdb_readonly", "redact",
           "redact_secrets", "storage_error", "storage_url", "study_names"]

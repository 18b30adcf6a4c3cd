"""Fleet mechanics: what lets many ``tuner worker`` processes share one study through an RDB.

Nothing but the database coordinates the workers. This module holds the pieces that make that
safe, each usable and testable on its own (on an SQLite file as on PostgreSQL):

* ``Retrying``: every storage call is retried with exponential backoff while the error is
  transient (``is_transient``), so a database restart costs a pause, not the study;
* ``Heartbeat``: a thread records a running trial's heartbeat;
* ``BudgetLock``: "count the trials, then ask" under a database lock, so the budget is exact;
* ``census``: the study's trials as the budget sees them;
* the claims table (``claim``/``release``): one evaluation per config across the fleet;
* ``stale_trials``/``fail_and_requeue``: a trial whose worker is gone is failed with the reason
  stored and queued again (Optuna's WAITING state, same parameters);
* ``BufferedTrial``/``BufferedStudy``: a trial's record written in one transaction.

It is also where ``tuner`` reaches into Optuna's RDB tables (``optuna.storages._rdb.models``)
and private trial handles, so an Optuna upgrade is checked here. The same layout as Optuna's
own ``storages/_heartbeat.py`` and ``RetryHeartbeatStaleTrialCallback``.
"""

from __future__ import annotations

import fcntl
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models
from optuna.trial import TrialState

from tuner import _record
from tuner._errors import TunerError
from tuner._secrets import redact_text
from tuner.storage import create_tables

T = TypeVar("T")

#: a re-queued trial that goes stale again is retried at most this many times
MAX_RETRIES = 3
#: give up when the storage has been unreachable this long
STORAGE_PATIENCE_S = 600.0

_T = models.TrialModel.__table__
_U = models.TrialUserAttributeModel.__table__
_S = models.TrialSystemAttributeModel.__table__
_H = models.TrialHeartbeatModel.__table__
_ADVISORY_KEY = 0x74756E  # "tun": first half of the PostgreSQL advisory lock key

_claims_meta = sa.MetaData()
CLAIMS = sa.Table(
    "tuner_eval_claims", _claims_meta,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("study_id", sa.Integer, nullable=False),
    sa.Column("trial_id", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(160), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)


def _running(state: Any) -> bool:
    return state in (TrialState.RUNNING, "RUNNING")


# -- storage errors -------------------------------------------------------------------------
def is_transient(exc: BaseException) -> bool:
    """True for errors that mean "the database is unreachable right now" (retry them)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError,
                          ConnectionError, TimeoutError)):
            return True
        if isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated:
            return True
        e = e.__cause__ or e.__context__
    return False


def short_error(exc: BaseException) -> str:
    """One line about an error, never with a URL's password."""
    e: BaseException = exc
    while e.__cause__ is not None:
        e = e.__cause__
    e = getattr(e, "orig", None) or e
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return redact_text(f"{type(e).__name__}: {text}"[:300])


class Retrying:
    """Calls storage functions through outages: on a transient error wait (0.5 s doubling to
    10 s) and retry, for at most ``patience_s`` of continuous outage; other errors raise."""

    def __init__(self, log: Callable[[str], None], label: str = "",
                 patience_s: float = STORAGE_PATIENCE_S, sleep: Callable[[float], None] =
                 time.sleep) -> None:
        self.log, self.label, self.patience_s, self.sleep = log, label, patience_s, sleep
        self.outage_since: float | None = None

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        delay = 0.5
        while True:
            try:
                out = fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = time.monotonic()
                if self.outage_since is None:
                    self.outage_since = now
                    self.log(f"{self.label}storage unavailable ({short_error(exc)}); "
                             "retrying with backoff")
                elif now - self.outage_since > self.patience_s:
                    raise TunerError(f"storage unreachable for {self.patience_s:.0f} s: "
                                     f"{short_error(exc)}") from None
                self.sleep(delay)
                delay = min(10.0, delay * 2)
                continue
            if self.outage_since is not None:
                self.log(f"{self.label}storage back after "
                         f"{time.monotonic() - self.outage_since:.1f} s")
                self.outage_since = None
            return out


# -- heartbeat and budget lock ----------------------------------------------------------------
class Heartbeat:
    """Records one trial's heartbeat every ``interval`` seconds; survives storage errors."""

    def __init__(self, rdb: optuna.storages.RDBStorage, trial_id: int, interval: float) -> None:
        self.rdb, self.trial_id, self.interval = rdb, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{trial_id}",
                                        daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.rdb.record_heartbeat(self.trial_id)
            except Exception:  # storage down: the main loop reports it; keep trying
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class BudgetLock:
    """Serializes "count the trials, then ask" across workers, so the budget is exact.

    PostgreSQL: a session advisory lock (released by the server if the holder dies). SQLite:
    an flock on a file next to the database (workers on one machine). MySQL: GET_LOCK.
    Other databases: no lock; the study may overshoot its budget by up to workers - 1.
    """

    def __init__(self, engine: sa.Engine, study_id: int) -> None:
        self.engine, self.study_id = engine, study_id
        self.dialect = engine.dialect.name
        self.effective = self.dialect in ("postgresql", "sqlite", "mysql", "mariadb")
        self._conn: sa.Connection | None = None
        self._fh: Any = None

    def __enter__(self) -> BudgetLock:
        if self.dialect == "postgresql":
            self._conn = self.engine.connect()
            self._conn.execute(sa.text("SELECT pg_advisory_lock(:a, :b)"),
                               {"a": _ADVISORY_KEY, "b": self.study_id})
            self._conn.commit()
        elif self.dialect in ("mysql", "mariadb"):
            self._conn = self.engine.connect()
            self._conn.execute(sa.text("SELECT GET_LOCK(:n, 600)"),
                               {"n": f"tuner-study-{self.study_id}"})
            self._conn.commit()
        elif self.dialect == "sqlite":
            db = self.engine.url.database
            self._fh = open(f"{db}.tuner-lock", "a")  # noqa: SIM115 (held until __exit__)
            fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._conn is not None:
            try:
                if self.dialect == "postgresql":
                    self._conn.execute(sa.text("SELECT pg_advisory_unlock(:a, :b)"),
                                       {"a": _ADVISORY_KEY, "b": self.study_id})
                else:
                    self._conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"),
                                       {"n": f"tuner-study-{self.study_id}"})
                self._conn.commit()
            except Exception:  # connection gone: the server released the lock with it
                self._conn.invalidate()
            finally:
                self._conn.close()
                self._conn = None
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


# -- one transaction per told trial -----------------------------------------------------------
class BufferedTrial:
    """An Optuna trial whose user attributes and constraints are written in one transaction
    when the outcome is told (Optuna's API commits each one separately)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self._trial = trial
        self._trial_id = trial._trial_id
        self.number = trial.number
        self.user: dict[str, Any] = {}
        self.system: dict[str, Any] = {}

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user[key] = value

    def set_constraint(self, key: str, value: float) -> None:
        value = float(value)
        if math.isnan(value):
            raise ValueError(f"constraint {key!r} is NaN")
        self.system[f"{_record.CONSTRAINTS_KEY}:{key}"] = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


class BufferedStudy:
    """Hands ``tell`` a flushed trial: attributes first (one transaction), then Optuna's tell."""

    def __init__(self, study: optuna.Study, engine: sa.Engine) -> None:
        self._study, self._engine = study, engine
        self._storage = study._storage

    def tell(self, trial: BufferedTrial, values: Any = None, state: Any = None) -> Any:
        with self._engine.begin() as conn:
            current = conn.execute(sa.select(_T.c.state).where(
                _T.c.trial_id == trial._trial_id).with_for_update()).scalar()
            if not _running(current):
                raise optuna.exceptions.UpdateFinishedTrialError(
                    f"trial {trial.number} is already {current}")
            for table, attrs in ((_U, trial.user), (_S, _record.with_list_form(trial.system))):
                if not attrs:
                    continue
                conn.execute(table.delete().where(table.c.trial_id == trial._trial_id,
                                                  table.c.key.in_(list(attrs))))
                conn.execute(table.insert(), [
                    {"trial_id": trial._trial_id, "key": k,
                     "value_json": json.dumps(v, default=str)} for k, v in attrs.items()])
        return self._study.tell(trial._trial, values, state=state)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


# -- census -----------------------------------------------------------------------------------
@dataclass
class Census:
    """The study's trials as the budget sees them."""

    finished: int  # complete, pruned, or failed for good (not re-queued)
    running: int
    waiting: int


def census(engine: sa.Engine, study_id: int) -> Census:
    """Finished / running / waiting trials, read fresh from the database."""
    requeued = sa.select(_U.c.trial_id).where(_U.c.key == _record.REQUEUED,
                                              _U.c.value_json == "true")
    has_status = sa.select(_U.c.trial_id).where(_U.c.key == _record.STATUS)
    q = (sa.select(_T.c.state, sa.func.count())
         .where(_T.c.study_id == study_id, _T.c.trial_id.not_in(requeued))
         .where(sa.or_(_T.c.state != TrialState.FAIL, _T.c.trial_id.in_(has_status)))
         .group_by(_T.c.state))
    with engine.connect() as conn:
        by_state = {TrialState[s] if isinstance(s, str) else s: n for s, n in conn.execute(q)}
    finished = sum(n for s, n in by_state.items() if s.is_finished())
    return Census(finished, by_state.get(TrialState.RUNNING, 0),
                  by_state.get(TrialState.WAITING, 0))


# -- claims: one evaluation per config --------------------------------------------------------
def create_claims_table(engine: sa.Engine) -> None:
    create_tables(_claims_meta, engine)


def claim(engine: sa.Engine, key: str, study_id: int, trial_id: int, worker: str) -> bool:
    """Claim a config for evaluation; False when another live trial holds it."""
    row = {"key": key, "study_id": study_id, "trial_id": trial_id, "worker": worker,
           "claimed_at": time.time()}
    with engine.connect() as conn:
        for _ in range(3):
            try:
                conn.execute(CLAIMS.insert().values(**row))
                conn.commit()
                return True
            except sa.exc.IntegrityError:
                conn.rollback()
            holder = conn.execute(sa.select(CLAIMS.c.trial_id).where(
                CLAIMS.c.key == key)).scalar()
            if holder is None:
                continue  # released meanwhile: try again
            if holder == trial_id:
                return True  # our own insert, committed before a lost reply
            state = conn.execute(sa.select(_T.c.state).where(_T.c.trial_id == holder)).scalar()
            if _running(state):
                return False
            # the holder's trial ended without storing a result: take the claim over
            conn.execute(CLAIMS.delete().where(CLAIMS.c.key == key,
                                               CLAIMS.c.trial_id == holder))
            conn.commit()
    return False


def release(engine: sa.Engine, key: str, trial_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(CLAIMS.delete().where(CLAIMS.c.key == key, CLAIMS.c.trial_id == trial_id))


# -- stale trials -----------------------------------------------------------------------------
def stale_trials(engine: sa.Engine, study_id: int, grace_s: float, lock_effective: bool,
                 orphans: Sequence[int] = ()) -> list[tuple[int, str]]:
    """(trial_id, reason) of running trials whose worker is gone.

    ``orphans``: trials this worker asked for but could not start (the storage went away
    between ask and first heartbeat).
    """
    q = (sa.select(_T.c.trial_id, _T.c.datetime_start, _H.c.heartbeat)
         .select_from(_T.outerjoin(_H, _H.c.trial_id == _T.c.trial_id))
         .where(_T.c.study_id == study_id, _T.c.state == TrialState.RUNNING))
    out = []
    with engine.connect() as conn:
        now_db = conn.execute(sa.select(sa.func.now())).scalar()
        now_db = now_db.replace(tzinfo=None) if now_db else None
        rows = conn.execute(q).all()
    for trial_id, started, beat in rows:
        if trial_id in orphans:
            out.append((trial_id, "its worker lost the storage before the trial started"))
        elif beat is None:
            # under the lock nobody is between ask and first heartbeat: an orphan;
            # without a lock, give it a generous age (client clocks, not the server's)
            age = (datetime.now() - started).total_seconds() if started else 0.0
            if lock_effective or age > max(60.0, 10.0 * grace_s):
                out.append((trial_id, "its worker stopped before the first heartbeat"))
        elif now_db is not None and now_db - beat > timedelta(seconds=grace_s):
            lag = (now_db - beat).total_seconds()
            out.append((trial_id, f"worker lost: no heartbeat for {lag:.0f} s (grace "
                                  f"{grace_s} s; killed, crashed or disconnected)"))
    return out


def live_workers(engine: sa.Engine, study_id: int, grace_s: float = 60.0) -> int:
    """Running trials of the study whose worker still records heartbeats (a fleet at work)."""
    q = (sa.select(sa.func.count()).select_from(_T.join(_H, _H.c.trial_id == _T.c.trial_id))
         .where(_T.c.study_id == study_id, _T.c.state == TrialState.RUNNING))
    with engine.connect() as conn:
        now_db = conn.execute(sa.select(sa.func.now())).scalar()
        if now_db is None:
            return 0
        cutoff = now_db.replace(tzinfo=None) - timedelta(seconds=grace_s)
        return int(conn.execute(q.where(_H.c.heartbeat >= cutoff)).scalar() or 0)


def fail_and_requeue(rdb: optuna.storages.RDBStorage, study: optuna.Study, trial_id: int,
                     reason: str, max_retries: int = MAX_RETRIES) -> tuple[int, str] | None:
    """Mark a running trial failed (reason stored) and queue a retry; returns (trial number,
    full reason), or None if it had already finished. Callers hold the budget lock."""
    try:
        if not rdb.set_trial_state_values(trial_id, TrialState.FAIL):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    trial = rdb.get_trial(trial_id)
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    requeue = len(history) <= max_retries
    if requeue:  # Optuna's RetryHeartbeatStaleTrialCallback layout, without stale attrs
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            system_attrs={"failed_trial": history[0], "retry_history": history}))
        reason += "; re-queued as a new trial"
    else:
        reason += f"; not retried again (already retried {max_retries} times)"
    marks = {_record.STATUS: "failed", _record.REASON: reason, _record.REQUEUED: requeue,
             _record.FEASIBLE: False, _record.CACHED: False}
    with rdb.engine.begin() as conn:  # the trial is finished: Optuna's API refuses
        conn.execute(_U.delete().where(_U.c.trial_id == trial_id, _U.c.key.in_(marks)))
        conn.execute(_U.insert(), [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                                   for k, v in marks.items()])
        conn.execute(CLAIMS.delete().where(CLAIMS.c.trial_id == trial_id))
    return trial.number, reason


__all__ = ["BudgetLock", "BufferedStudy", "BufferedTrial", "CLAIMS", "Census", "Heartbeat",
           "MAX_RETRIES", "Retrying", "STORAGE_PATIENCE_S", "census", "claim",
           "create_claims_table", "fail_and_requeue", "is_transient", "live_workers", "release",
           "short_error", "stale_trials"]

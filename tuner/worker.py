"""``tuner worker``: one more worker on a study shared through an RDB (PostgreSQL).

This is Optuna's own distributed mode: every worker asks and tells through the shared
storage and nothing but the database coordinates them. What it adds to plain Optuna:

* **Exact budget.** Counting the study's trials and asking for a new one happen under a
  database lock (a PostgreSQL advisory lock; a file lock for SQLite on one machine), so
  ``--trials 200`` over any number of workers gives exactly 200 finished trials.
* **Heartbeats.** A thread records each running trial's heartbeat. A trial whose heartbeat
  is older than the grace period (its worker was killed or lost its network) is marked
  failed with the reason stored, and re-queued (Optuna's WAITING state, same parameters) for
  the next worker; retried at most ``MAX_RETRIES`` times.
* **Shared cache, no duplicate evaluations.** Results go to the evaluation cache table as soon
  as they exist; before evaluating, a worker claims the config in ``tuner_eval_claims``. A
  worker that proposes a config another one is evaluating waits for that result instead of
  measuring it again (the claim of a dead worker is taken over).
* **Storage outages.** Every storage call is retried with exponential backoff (a database
  restart costs a pause, not the study); evaluations keep running meanwhile.

Sampling: TPE runs with ``constant_liar`` (running trials count as bad, so concurrent asks
spread out); the learned-cost-model sampler treats running trials as pending. Each worker
seeds its sampler from the study seed and its own id, so a distributed study is not
reproducible by seed (the set of evaluated configs depends on timing).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, TypeVar

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import BadInput, TunerError
from tuner._evaluator import EvalResult, Status, config_key
from tuner._interrupt import Interrupt
from tuner._pool import EvalPool
from tuner.runner import MAX_CONSECUTIVE_REPEATS, Runner, default_memory_limit_mib
from tuner.samplers import make_sampler
from tuner.spec import StudySpec, load_spec
from tuner.storage import create_tables, open_rdb

T = TypeVar("T")

# heartbeats are recorded by the worker's own thread, not by Study.optimize: expected here
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

#: a re-queued trial that goes stale again is retried at most this many times
MAX_RETRIES = 3
#: grace period = this many heartbeat intervals (Optuna's default is 2; 3 tolerates a busy host)
GRACE_INTERVALS = 3
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


def _short(exc: BaseException) -> str:
    """One line about an error, never with a URL's password."""
    e: BaseException = exc
    while e.__cause__ is not None:
        e = e.__cause__
    e = getattr(e, "orig", None) or e
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return redact_text(f"{type(e).__name__}: {text}"[:300])


def redact_text(text: str) -> str:
    """Hide ``user:password@`` in any URL inside ``text``."""
    import re

    return re.sub(r"(\w[\w+.-]*://[^:/@\s]+):[^@\s]+@", r"\1:***@", text)


# -- helpers ----------------------------------------------------------------------------------
class _Heartbeat:
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

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _BudgetLock:
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

    def __enter__(self) -> "_BudgetLock":
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


class _BufferedTrial:
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
        self.system[f"constraints:{key}"] = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


class _BufferedStudy:
    """Hands ``tell`` a flushed trial: attributes first (one transaction), then Optuna's tell."""

    def __init__(self, study: optuna.Study, engine: sa.Engine) -> None:
        self._study, self._engine = study, engine
        self._storage = study._storage

    def tell(self, trial: _BufferedTrial, values: Any = None, state: Any = None) -> Any:
        with self._engine.begin() as conn:
            current = conn.execute(sa.select(_T.c.state).where(
                _T.c.trial_id == trial._trial_id).with_for_update()).scalar()
            if current not in (TrialState.RUNNING, "RUNNING"):
                raise optuna.exceptions.UpdateFinishedTrialError(
                    f"trial {trial.number} is already {current}")
            for table, attrs in ((_U, trial.user), (_S, trial.system)):
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


@dataclass
class Census:
    """The study's trials as the budget sees them."""

    finished: int  # complete, pruned, or failed for good (not re-queued)
    running: int
    waiting: int


@dataclass
class WorkerSummary:
    study_name: str
    storage: str
    worker: str
    trials_this_worker: int
    evaluated: int
    cached: int
    infeasible: int
    failed: int
    waited: int
    requeued: int
    study_finished: int
    trials_target: int | None
    interrupted: bool
    stop_reason: str
    elapsed_s: float
    counts: dict[str, int] = field(default_factory=dict)


# -- the worker -------------------------------------------------------------------------------
class Worker(Runner):
    """Runs trials of a shared study until the study reaches its budget.

    Reuses the runner's space/evaluator/sampler construction and its ``_tell`` (so stored
    trials follow the same conventions), with ask/tell going straight to the RDB storage.
    """

    def __init__(self, spec: StudySpec, storage: str, *, trials: int | None = None,
                 wall_time_s: float | None = None, sampler: str | None = None,
                 heartbeat_s: int = 10, grace_s: int | None = None, progress: bool = True,
                 poll_s: float = 0.25, storage_patience_s: float = STORAGE_PATIENCE_S,
                 log: Callable[[str], None] | None = None) -> None:
        if heartbeat_s <= 0:
            raise BadInput("--heartbeat", f"{heartbeat_s} must be a positive number of seconds")
        url = storage
        if url.startswith("sqlite") and (url in ("sqlite://", "sqlite:///:memory:")
                                         or ":memory:" in url):
            raise BadInput("--storage", "an in-memory database cannot be shared; use "
                           "postgresql+psycopg://... (or an SQLite file on one machine)")
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.heartbeat_s = int(heartbeat_s)
        self.grace_s = int(grace_s or max(5, GRACE_INTERVALS * self.heartbeat_s))
        self.poll_s = poll_s
        self._stop = Interrupt(signal.SIGINT, signal.SIGTERM)  # installed while run() runs
        self.patience_s = storage_patience_s
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._progress_lines = progress
        super().__init__(spec, storage, trials=trials, wall_time_s=wall_time_s, workers=1,
                         sampler=sampler, progress=False)
        # the same database, now with heartbeats (the runner opened it without)
        self.rdb.engine.dispose()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            self.rdb = open_rdb(url, heartbeat_interval=self.heartbeat_s,
                                grace_period=self.grace_s)
        self.cache.engine = self.rdb.engine
        create_tables(_claims_meta, self.rdb.engine)
        self.sampler = self._worker_sampler(sampler)
        self._orphans: list[int] = []
        self._outage_since: float | None = None

    def _worker_sampler(self, override: str | None) -> Any:
        spec = self.spec
        options = dict(spec.sampler.options) if override in (None, spec.sampler.name) else {}
        if self.sampler_name == "tpe":
            options.setdefault("constant_liar", True)
        seed = None
        if spec.seed is not None:
            seed = (spec.seed * 1_000_003 + zlib.crc32(self.worker_id.encode())) % 2**31
        return make_sampler(self.sampler_name, self.space, spec.directions, seed, options)

    # -- storage with retries -------------------------------------------------------------
    def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn``; on a transient storage error wait (0.5 s doubling to 10 s) and retry."""
        delay = 0.5
        while True:
            try:
                out = fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = time.monotonic()
                if self._outage_since is None:
                    self._outage_since = now
                    self._log(f"[{self.worker_id}] storage unavailable ({_short(exc)}); "
                              "retrying with backoff")
                elif now - self._outage_since > self.patience_s:
                    raise TunerError(f"storage unreachable for {self.patience_s:.0f} s: "
                                     f"{_short(exc)}") from None
                time.sleep(delay)
                delay = min(10.0, delay * 2)
                continue
            if self._outage_since is not None:
                self._log(f"[{self.worker_id}] storage back after "
                          f"{time.monotonic() - self._outage_since:.1f} s")
                self._outage_since = None
            return out

    # -- study ----------------------------------------------------------------------------
    def _open_shared(self) -> optuna.Study:
        spec = self.spec
        try:
            sid = self.rdb.get_study_id_from_name(spec.name)
        except KeyError:
            sid = None
        if sid is not None:
            self._check_compatible(sid)
        study = optuna.create_study(storage=self.rdb, sampler=self.sampler,
                                    study_name=spec.name, directions=spec.directions,
                                    load_if_exists=True)
        attrs = {**self._study_attrs(), "tuner.mode": "shared"}
        current = study.user_attrs
        for k, v in attrs.items():
            if current.get(k) != v:
                study.set_user_attr(k, v)
        self._set_study_state(study, "running")
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("feasible") and t.values:
                self._update_penalty(t.values)
        return study

    def _set_study_state(self, study: optuna.Study, state: str) -> None:
        study.set_user_attr("tuner.state", state)
        study.set_user_attr("tuner.updated_at", time.time())

    def census(self, study_id: int) -> Census:
        """Finished / running / waiting trials, read fresh from the database."""
        requeued = sa.select(_U.c.trial_id).where(_U.c.key == "requeued",
                                                  _U.c.value_json == "true")
        has_status = sa.select(_U.c.trial_id).where(_U.c.key == "status")
        q = (sa.select(_T.c.state, sa.func.count())
             .where(_T.c.study_id == study_id, _T.c.trial_id.not_in(requeued))
             .where(sa.or_(_T.c.state != TrialState.FAIL, _T.c.trial_id.in_(has_status)))
             .group_by(_T.c.state))
        with self.rdb.engine.connect() as conn:
            by_state = {TrialState[s] if isinstance(s, str) else s: n
                        for s, n in conn.execute(q)}
        finished = sum(n for s, n in by_state.items() if s.is_finished())
        return Census(finished, by_state.get(TrialState.RUNNING, 0),
                      by_state.get(TrialState.WAITING, 0))

    # -- stale trials ---------------------------------------------------------------------
    def _stale_trials(self, study_id: int, lock_effective: bool) -> list[tuple[int, str]]:
        """(trial_id, reason) of running trials whose worker is gone."""
        q = (sa.select(_T.c.trial_id, _T.c.datetime_start, _H.c.heartbeat)
             .select_from(_T.outerjoin(_H, _H.c.trial_id == _T.c.trial_id))
             .where(_T.c.study_id == study_id, _T.c.state == TrialState.RUNNING))
        out = []
        with self.rdb.engine.connect() as conn:
            now_db = conn.execute(sa.select(sa.func.now())).scalar()
            now_db = now_db.replace(tzinfo=None) if now_db else None
            rows = conn.execute(q).all()
        for trial_id, started, beat in rows:
            if trial_id in self._orphans:
                out.append((trial_id, "its worker lost the storage before the trial started"))
            elif beat is None:
                # under the lock nobody is between ask and first heartbeat: an orphan;
                # without a lock, give it a generous age (client clocks, not the server's)
                age = (datetime.now() - started).total_seconds() if started else 0.0
                if lock_effective or age > max(60.0, 10.0 * self.grace_s):
                    out.append((trial_id, "its worker stopped before the first heartbeat"))
            elif now_db is not None and now_db - beat > timedelta(seconds=self.grace_s):
                lag = (now_db - beat).total_seconds()
                out.append((trial_id, f"worker lost: no heartbeat for {lag:.0f} s (grace "
                                      f"{self.grace_s} s; killed, crashed or disconnected)"))
        return out

    def _fail_and_requeue(self, study: optuna.Study, trial_id: int, reason: str) -> bool:
        """Mark a running trial failed (reason stored) and queue a retry; False if it had
        already finished. Callers hold the budget lock."""
        try:
            if not self.rdb.set_trial_state_values(trial_id, TrialState.FAIL):
                return False
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        trial = self.rdb.get_trial(trial_id)
        history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
        requeue = len(history) <= MAX_RETRIES
        if requeue:  # Optuna's RetryHeartbeatStaleTrialCallback layout, without stale attrs
            study.add_trial(optuna.trial.create_trial(
                state=TrialState.WAITING, params=trial.params,
                distributions=trial.distributions,
                system_attrs={"failed_trial": history[0], "retry_history": history}))
            reason += "; re-queued as a new trial"
        else:
            reason += f"; not retried again (already retried {MAX_RETRIES} times)"
        marks = {"status": "failed", "reason": reason, "requeued": requeue,
                 "feasible": False, "cached": False}
        with self.rdb.engine.begin() as conn:  # the trial is finished: Optuna's API refuses
            conn.execute(_U.delete().where(_U.c.trial_id == trial_id, _U.c.key.in_(marks)))
            conn.execute(_U.insert(), [{"trial_id": trial_id, "key": k,
                                        "value_json": json.dumps(v)} for k, v in marks.items()])
            conn.execute(CLAIMS.delete().where(CLAIMS.c.trial_id == trial_id))
        self._log(f"[{self.worker_id}] trial {trial.number} failed: {reason}")
        return True

    def _reap(self, study: optuna.Study, lock: _BudgetLock) -> int:
        n = 0
        for trial_id, reason in self._stale_trials(study._study_id, lock.effective):
            n += self._fail_and_requeue(study, trial_id, reason)
            if trial_id in self._orphans:
                self._orphans.remove(trial_id)
        return n

    # -- claims -------------------------------------------------------------------------------
    def _claim(self, key: str, study_id: int, trial_id: int) -> bool:
        """Claim a config for evaluation; False when another live trial holds it."""
        row = {"key": key, "study_id": study_id, "trial_id": trial_id,
               "worker": self.worker_id, "claimed_at": time.time()}
        with self.rdb.engine.connect() as conn:
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
                state = conn.execute(sa.select(_T.c.state).where(
                    _T.c.trial_id == holder)).scalar()
                if state in (TrialState.RUNNING, "RUNNING"):
                    return False
                # the holder's trial ended without storing a result: take the claim over
                conn.execute(CLAIMS.delete().where(CLAIMS.c.key == key,
                                                   CLAIMS.c.trial_id == holder))
                conn.commit()
        return False

    def _release(self, key: str, trial_id: int) -> None:
        with self.rdb.engine.begin() as conn:
            conn.execute(CLAIMS.delete().where(CLAIMS.c.key == key,
                                               CLAIMS.c.trial_id == trial_id))

    def _store(self, key: str, result: EvalResult, trial_id: int) -> None:
        if result.status != Status.FAILED:  # failures are retried later, never cached
            self.cache.put(key, result)
        self._release(key, trial_id)

    # -- one trial ------------------------------------------------------------------------
    def _next_trial(self, study: optuna.Study, lock: _BudgetLock
                    ) -> tuple[str, Any]:
        """Under the lock: reap stale trials, check the budget, ask and suggest."""
        with lock:
            requeued = self._reap(study, lock)
            self.counts["requeued"] += requeued
            census = self.census(study._study_id)
            target = self.trials_target
            if target is not None and census.finished >= target:
                return "done", "budget reached"
            exhausted = getattr(self.sampler, "exhausted", None)
            if census.waiting == 0 and exhausted is not None and exhausted(study):
                return ("done", "every valid config evaluated") if census.running == 0 \
                    else ("wait", None)
            if target is not None and census.waiting == 0 and \
                    census.finished + census.running >= target:
                return "wait", None  # the last trials are running elsewhere
            trial = study.ask()
            self._held = trial._trial_id  # ours from here on: hand it back if we stop
            try:
                self.rdb.record_heartbeat(trial._trial_id)
                trial.set_user_attr("worker", self.worker_id)
                config = self.space.suggest(trial)
            except BaseException:
                self._orphans.append(trial._trial_id)
                raise
            return "trial", (trial, config)

    def _finish(self, study: optuna.Study, trial: optuna.Trial, config: dict[str, Any],
                result: EvalResult, cached: bool, eval_s: float) -> FrozenTrial | None:
        """Tell the outcome (retrying through outages); None if the trial was failed as
        stale meanwhile (its re-queued copy will find the result in the cache)."""
        def tell() -> FrozenTrial | None:
            try:
                return self._tell(_BufferedStudy(study, self.rdb.engine),  # type: ignore
                                  _BufferedTrial(trial), config, result, cached, eval_s)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
                state = self.rdb.get_trial(trial._trial_id).state
                if state == TrialState.COMPLETE or (state == TrialState.FAIL and
                                                    result.status == Status.FAILED):
                    return self.rdb.get_trial(trial._trial_id)  # our tell got through
                if state == TrialState.RUNNING:
                    raise exc
                return None

        frozen = self._db(tell)
        if frozen is None:
            self._log(f"[{self.worker_id}] trial {trial.number} was marked failed while this "
                      "worker was unreachable; its re-queued copy reuses the stored result")
        return frozen

    def _wait_for_holder(self, study: optuna.Study, lock: _BudgetLock, key: str,
                         trial_id: int) -> EvalResult | None:
        """Another worker is evaluating this config: its result, or None once we hold the
        claim ourselves (the holder failed, or died and was reaped: we check every grace
        period, since a waiting worker may be the only one left to notice)."""
        next_reap = time.monotonic() + self.grace_s
        while True:
            self._stop.check()
            hit = self.cache.get(key, refresh=True)
            if hit is not None:
                return hit
            if self._claim(key, study._study_id, trial_id):
                return None
            if time.monotonic() >= next_reap:
                with lock:
                    self.counts["requeued"] += self._reap(study, lock)
                next_reap = time.monotonic() + self.grace_s
            time.sleep(self.poll_s)

    def _evaluate(self, pool: EvalPool, key: str, config: dict[str, Any]
                  ) -> tuple[EvalResult, float]:
        pool.submit(key, config)
        while True:
            self._stop.check()
            for _key, result, secs in pool.poll(0.2):
                return result, secs

    def _run_trial(self, study: optuna.Study, lock: _BudgetLock, pool: EvalPool,
                   trial: optuna.Trial, config: dict[str, Any]) -> FrozenTrial | None:
        reasons = self.space.constraints(config)
        if reasons:
            self.counts["infeasible"] += 1
            return self._finish(study, trial, config, EvalResult.infeasible("; ".join(reasons)),
                                False, 0.0)
        key = config_key(config, self.fingerprint)
        hit = self._db(self.cache.get, key, True)
        if hit is None and not self._db(self._claim, key, study._study_id, trial._trial_id):
            self.counts["waited"] += 1
            hit = self._db(self._wait_for_holder, study, lock, key, trial._trial_id)
        if hit is not None:
            self.counts["cached"] += 1
            self._repeats += 1
            return self._finish(study, trial, config, hit, True, 0.0)
        self._repeats = 0
        result, secs = self._evaluate(pool, key, config)
        self.counts["evaluated"] += 1
        self._db(self._store, key, result, trial._trial_id)
        return self._finish(study, trial, config, result, False, secs)

    def _abandon(self, study: optuna.Study, lock: _BudgetLock, trial_id: int,
                 reason: str) -> None:
        """Best effort on the way out: fail and re-queue our own running trial."""
        try:
            with lock:
                self._fail_and_requeue(study, trial_id, reason)
        except Exception as exc:
            self._log(f"[{self.worker_id}] could not re-queue trial (id {trial_id}): "
                      f"{_short(exc)}; the others will once its heartbeat is stale")

    def _print_trial(self, frozen: FrozenTrial | None) -> None:
        if frozen is None or not self._progress_lines:
            return
        ua = frozen.user_attrs
        metrics = " ".join(f"{o.metric}={ua.get('metrics', {}).get(o.metric, float('nan')):.4g}"
                           for o in self.spec.objectives)
        extra = " (cached)" if ua.get("cached") else f" ({ua.get('eval_s', 0):.2f} s)"
        why = f": {ua.get('reason')}" if ua.get("status") != "ok" and ua.get("reason") else ""
        self._log(f"[{self.worker_id}] trial {frozen.number} {ua.get('status')} "
                  f"{metrics}{extra}{why}")

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> WorkerSummary:  # type: ignore[override]
        t0 = time.monotonic()
        deadline = t0 + self.wall_time_s if self.wall_time_s else None
        self.counts = {"evaluated": 0, "cached": 0, "infeasible": 0, "failed": 0,
                       "waited": 0, "requeued": 0, "trials": 0}
        self._repeats = 0
        study = self._db(self._open_shared)
        self._db(self.cache.load)
        lock = _BudgetLock(self.rdb.engine, study._study_id)
        memory = self.spec.budget.memory_limit_mib or default_memory_limit_mib(1)
        pool = EvalPool(self.evaluator_name, self.spec.evaluator.options, 1,
                        self.spec.budget.trial_timeout_s, memory)
        self._held: int | None = None
        interrupted = False
        stop_reason = "budget reached"
        # Ctrl-C, and SIGTERM from a scheduler, stop the worker the same way
        try:
            with self._stop as stop:
                while True:
                    stop.check()
                    if deadline is not None and time.monotonic() >= deadline:
                        stop_reason = "wall time reached"
                        break
                    if self._repeats >= MAX_CONSECUTIVE_REPEATS:
                        stop_reason = (f"sampler proposed {self._repeats} already-evaluated "
                                       "configs in a row (space exhausted?)")
                        break
                    kind, payload = self._db(self._next_trial, study, lock)
                    if kind == "done":
                        stop_reason = payload
                        break
                    if kind == "wait":
                        time.sleep(self.poll_s)
                        continue
                    trial, config = payload
                    with _Heartbeat(self.rdb, trial._trial_id, self.heartbeat_s):
                        frozen = self._run_trial(study, lock, pool, trial, config)
                    self._held = None
                    self.counts["trials"] += 1
                    if frozen is not None and frozen.user_attrs.get("status") == "failed":
                        self.counts["failed"] += 1
                    self._print_trial(frozen)
        except KeyboardInterrupt:
            interrupted = True
            stop_reason = "interrupted: completed trials are stored"
        finally:
            pool.close()
            if self._held is not None:
                self._abandon(study, lock, self._held, "its worker was stopped "
                              "(interrupted) before the evaluation finished")
        census = self._final_state(study, interrupted)
        return WorkerSummary(
            self.spec.name, self.storage_label, self.worker_id, self.counts["trials"],
            self.counts["evaluated"], self.counts["cached"], self.counts["infeasible"],
            self.counts["failed"], self.counts["waited"], self.counts["requeued"],
            census.finished if census else -1, self.trials_target, interrupted, stop_reason,
            time.monotonic() - t0, dict(self.counts))

    def _final_state(self, study: optuna.Study, interrupted: bool) -> Census | None:
        try:
            census = self.census(study._study_id)
            if self.trials_target is not None and census.finished >= self.trials_target:
                self._set_study_state(study, "finished")
            elif interrupted and census.running == 0:
                self._set_study_state(study, "interrupted")
            return census
        except Exception as exc:
            self._log(f"[{self.worker_id}] could not read the final state: {_short(exc)}")
            return None


def _open_worker(spec: StudySpec, storage: str, attempts: int = 5, **kwargs: Any) -> Worker:
    """Build a worker; simultaneous first starts race on table creation, so retry those."""
    for i in range(attempts):
        try:
            return Worker(spec, storage, **kwargs)
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError,
                optuna.exceptions.StorageInternalError):
            if i == attempts - 1:
                raise
            time.sleep(0.2 + 0.3 * i + (os.getpid() % 7) / 20)
    raise AssertionError("unreachable")


def run_worker(args: Any) -> int:
    """``tuner worker STUDY.toml --storage URL [--trials N] [--timeout S] [--heartbeat S]``."""
    spec = load_spec(args.study)
    if args.trials is not None and args.trials <= 0:
        raise BadInput("--trials", f"{args.trials} must be > 0")
    if args.timeout is not None and args.timeout <= 0:
        raise BadInput("--timeout", f"{args.timeout} must be > 0")
    worker = _open_worker(spec, args.storage, trials=args.trials, wall_time_s=args.timeout,
                          sampler=args.sampler, heartbeat_s=args.heartbeat,
                          progress=not args.quiet)
    print(f"worker {worker.worker_id}: study {spec.name}  evaluator {worker.evaluator_name}  "
          f"sampler {worker.sampler_name}  storage {worker.storage_label}  heartbeat "
          f"{worker.heartbeat_s} s (grace {worker.grace_s} s)", file=sys.stderr, flush=True)
    s = worker.run()
    target = f"/{s.trials_target}" if s.trials_target else ""
    print(f"worker {s.worker}: {s.trials_this_worker} trials ({s.evaluated} evaluated, "
          f"{s.cached} from cache or another worker, {s.infeasible} infeasible, {s.failed} "
          f"failed, {s.requeued} stale trials re-queued) in {s.elapsed_s:.1f} s; study has "
          f"{s.study_finished}{target} finished trials; {s.stop_reason}", flush=True)
    return 130 if s.interrupted else 0


__all__ = ["CLAIMS", "Census", "Worker", "WorkerSummary", "is_transient", "run_worker"]

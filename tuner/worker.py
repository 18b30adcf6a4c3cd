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

Those mechanics live in ``tuner._fleet``; this module is the loop. The study is built by
``tuner._setup.StudySetup`` and trials are recorded by ``tuner._record``, as in the runner.

Sampling: TPE runs with ``constant_liar`` (running trials count as bad, so concurrent asks
spread out); the learned-cost-model sampler treats running trials as pending. Each worker
seeds its sampler from the study seed and its own id, so a distributed study is not
reproducible by seed (the set of evaluated configs depends on timing).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from tuner import _fleet, _record
from tuner._command import EXIT_INTERRUPTED, EXIT_OK, check_positive
from tuner._errors import BadInput
from tuner._evaluator import EvalResult, Status, config_key
from tuner._fleet import (
    CLAIMS,
    MAX_RETRIES,
    STORAGE_PATIENCE_S,
    BudgetLock,
    Census,
    is_transient,
    short_error,
)
from tuner._interrupt import Interrupt
from tuner._pool import EvalPool
from tuner._setup import MAX_CONSECUTIVE_REPEATS, StudySetup, exhausted, state_attrs
from tuner._study_lock import live_holder
from tuner.spec import StudySpec, load_spec
from tuner.storage import EvalCache, open_rdb, redact

optuna.logging.set_verbosity(optuna.logging.WARNING)
# heartbeats are recorded by the worker's own thread, not by Study.optimize: expected here
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

#: grace period = this many heartbeat intervals (Optuna's default is 2; 3 tolerates a busy host)
GRACE_INTERVALS = 3


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


class Worker:
    """Runs trials of a shared study until the study reaches its budget.

    Builds the study like the runner (``StudySetup``) and records trials like it
    (``tuner._record``), with ask/tell going straight to the RDB storage.
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
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._progress_lines = progress
        self._db = _fleet.Retrying(self._log, f"[{self.worker_id}] ", storage_patience_s)

        self.setup = StudySetup.build(spec, sampler)
        self.spec = self.setup.spec
        self.space = self.setup.space
        self.evaluator_name = self.setup.evaluator_name
        self.sampler_name = self.setup.sampler_name
        self.fingerprint = self.setup.fingerprint
        self.trials_target = trials or spec.budget.trials
        self.wall_time_s = wall_time_s or spec.budget.wall_time_s
        if self.trials_target is None and self.wall_time_s is None:
            raise BadInput("budget", "give trials and/or wall_time_s (or --trials/--timeout)")
        self.sampler = self._worker_sampler()  # before the storage: bad options touch nothing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            self.rdb = open_rdb(url, heartbeat_interval=self.heartbeat_s,
                                grace_period=self.grace_s)
        self.storage_label = redact(str(self.rdb.engine.url))
        self.cache = EvalCache(self.rdb.engine, self.fingerprint, self.evaluator_name)
        _fleet.create_claims_table(self.rdb.engine)
        self._orphans: list[int] = []
        self.counts: dict[str, int] = {}
        self._repeats = 0
        self._held: int | None = None  # the running trial this worker must hand back

    def _worker_sampler(self) -> Any:
        """One sampler for the worker's life: constant liar for TPE, a per-worker seed."""
        seed = None
        if self.spec.seed is not None:
            seed = (self.spec.seed * 1_000_003 + zlib.crc32(self.worker_id.encode())) % 2**31
        extra = {"constant_liar": True} if self.sampler_name == "tpe" else {}
        return self.setup.make_sampler(seed, **extra)

    # -- study ----------------------------------------------------------------------------
    def _open_shared(self) -> optuna.Study:
        spec = self.spec
        try:
            sid = self.rdb.get_study_id_from_name(spec.name)
        except KeyError:
            sid = None
        runner = live_holder(self.rdb.engine, spec.name)
        if runner is not None:
            raise BadInput("study", f"{spec.name!r} is being run by tuner run "
                           f"({runner.describe()}), its only writer; wait for it to finish "
                           "or stop it before workers share the study")
        if sid is not None:
            self.setup.check_compatible(self.rdb, sid)
        study = optuna.create_study(storage=self.rdb, sampler=self.sampler,
                                    study_name=spec.name, directions=spec.directions,
                                    load_if_exists=True)
        attrs = {**self.setup.study_attrs(self.trials_target), "tuner.mode": "shared"}
        current = study.user_attrs
        for k, v in attrs.items():
            if current.get(k) != v:
                study.set_user_attr(k, v)
        self._set_study_state(study, "running")
        return study

    def _set_study_state(self, study: optuna.Study, state: str) -> None:
        for k, v in state_attrs(state).items():
            study.set_user_attr(k, v)

    def census(self, study_id: int) -> Census:
        """Finished / running / waiting trials, read fresh from the database."""
        return _fleet.census(self.rdb.engine, study_id)

    # -- stale trials and claims ------------------------------------------------------------
    def _fail_and_requeue(self, study: optuna.Study, trial_id: int, reason: str) -> bool:
        """Fail a running trial and queue a retry (``_fleet.fail_and_requeue``); False if it
        had already finished. Callers hold the budget lock."""
        done = _fleet.fail_and_requeue(self.rdb, study, trial_id, reason, MAX_RETRIES)
        if done is None:
            return False
        number, full_reason = done
        self._log(f"[{self.worker_id}] trial {number} failed: {full_reason}")
        return True

    def _reap(self, study: optuna.Study, lock: BudgetLock) -> int:
        n = 0
        for trial_id, reason in _fleet.stale_trials(self.rdb.engine, study._study_id,
                                                    self.grace_s, lock.effective,
                                                    self._orphans):
            n += self._fail_and_requeue(study, trial_id, reason)
            if trial_id in self._orphans:
                self._orphans.remove(trial_id)
        return n

    def _claim(self, key: str, study_id: int, trial_id: int) -> bool:
        """Claim a config for evaluation; False when another live trial holds it."""
        return _fleet.claim(self.rdb.engine, key, study_id, trial_id, self.worker_id)

    def _store(self, key: str, result: EvalResult, trial_id: int) -> None:
        if result.status != Status.FAILED:  # failures are retried later, never cached
            self.cache.put(key, result)
        _fleet.release(self.rdb.engine, key, trial_id)

    # -- one trial ------------------------------------------------------------------------
    def _next_trial(self, study: optuna.Study, lock: BudgetLock) -> tuple[str, Any]:
        """Under the lock: reap stale trials, check the budget, ask and suggest."""
        with lock:
            requeued = self._reap(study, lock)
            self.counts["requeued"] += requeued
            census = self.census(study._study_id)
            target = self.trials_target
            if target is not None and census.finished >= target:
                return "done", "budget reached"
            if census.waiting == 0 and exhausted(self.sampler, study):
                return ("done", "every valid config evaluated") if census.running == 0 \
                    else ("wait", None)
            if target is not None and census.waiting == 0 and \
                    census.finished + census.running >= target:
                return "wait", None  # the last trials are running elsewhere
            trial = study.ask()
            self._held = trial._trial_id  # ours from here on: hand it back if we stop
            try:
                self.rdb.record_heartbeat(trial._trial_id)
                trial.set_user_attr(_record.WORKER, self.worker_id)
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
                return _record.record(
                    _fleet.BufferedStudy(study, self.rdb.engine), _fleet.BufferedTrial(trial),
                    config, result, self.spec.objectives, self.spec.constraints, cached, eval_s)
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

    def _wait_for_holder(self, study: optuna.Study, lock: BudgetLock, key: str,
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

    def _run_trial(self, study: optuna.Study, lock: BudgetLock, pool: EvalPool,
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
        result, secs = pool.evaluate_one(config, key, check=self._stop.check)
        self.counts["evaluated"] += 1
        self._db(self._store, key, result, trial._trial_id)
        return self._finish(study, trial, config, result, False, secs)

    def _abandon(self, study: optuna.Study, lock: BudgetLock, trial_id: int,
                 reason: str) -> None:
        """Best effort on the way out: fail and re-queue our own running trial."""
        try:
            with lock:
                self._fail_and_requeue(study, trial_id, reason)
        except Exception as exc:
            self._log(f"[{self.worker_id}] could not re-queue trial (id {trial_id}): "
                      f"{short_error(exc)}; the others will once its heartbeat is stale")

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
    def run(self) -> WorkerSummary:
        t0 = time.monotonic()
        deadline = t0 + self.wall_time_s if self.wall_time_s else None
        self.counts = {"evaluated": 0, "cached": 0, "infeasible": 0, "failed": 0,
                       "waited": 0, "requeued": 0, "trials": 0}
        self._repeats = 0
        study = self._db(self._open_shared)
        self._db(self.cache.load)
        lock = BudgetLock(self.rdb.engine, study._study_id)
        pool = self.setup.pool(1, EvalPool)
        self._held = None
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
                    with _fleet.Heartbeat(self.rdb, trial._trial_id, self.heartbeat_s):
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
            self._log(f"[{self.worker_id}] could not read the final state: {short_error(exc)}")
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


# -- the command ------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """``tuner worker STUDY.toml --storage URL [--trials N] [--timeout S] [--heartbeat S]``."""
    p.add_argument("study")
    p.add_argument("--storage", required=True, metavar="URL",
                   help="SQLAlchemy URL of the shared database (required), e.g. "
                        "postgresql+psycopg://user@host/db")
    p.add_argument("--trials", type=int, help="total trials for the study")
    p.add_argument("--timeout", type=float, help="wall-time budget of this worker in seconds")
    p.add_argument("--sampler")
    p.add_argument("--heartbeat", type=int, default=10, help="heartbeat interval in seconds")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.study)
    check_positive(args, "trials", "timeout")
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
    return EXIT_INTERRUPTED if s.interrupted else EXIT_OK


#: the name this command's entry had before subcommands shared one shape
run_worker = run

__all__ = ["CLAIMS", "Census", "MAX_RETRIES", "Worker", "WorkerSummary", "add_arguments",
           "is_transient", "run", "run_worker"]

"""The study loop: ask -> suggest -> constraints -> cache -> evaluate (pool) -> tell -> store.

Sampling runs against an in-memory Optuna study; every finished trial is written through to the
RDB storage in one transaction (``tuner._trial_writer``), so the loop pays one commit per trial
instead of Optuna's one per parameter/attribute, and a killed runner loses only evaluations
still in flight. The runner is the study's only writer (``tuner._study_lock``: a second run of
the same study is refused while this one is alive).

On start the stored trials are loaded back, so re-running a study resumes it: the sampler sees
every stored trial and gets a seed of its own for the resumed part (the same seed would
propose the same first configs again, each a cache hit). The recorded state
(``tuner.state``) ends ``finished``, ``interrupted`` (Ctrl-C, SIGTERM) or ``failed`` (any
other error, with ``tuner.error``), never ``running`` while no runner is.

Construction (space, evaluator, sampler, fingerprint) is ``tuner._setup.StudySetup``; turning
a result into a trial is ``tuner._record.record``. Both are shared with the fleet worker.
"""

from __future__ import annotations

import copy
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import _record
from tuner._errors import BadInput, TunerError
from tuner._evaluator import EvalResult, config_key
from tuner._interrupt import Interrupt
from tuner._pareto import pareto_mask
from tuner._pool import EvalPool
from tuner._results import StudyResults
from tuner._setup import (
    MAX_CONSECUTIVE_REPEATS,
    StudySetup,
    build,
    default_memory_limit_mib,
    exhausted,
    state_attrs,
)
from tuner._space import params_key
from tuner._study_lock import StudyLock
from tuner._trial_writer import TrialWriter
from tuner.spec import StudySpec
from tuner.storage import EvalCache, open_rdb, redact, storage_error

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: the flag ``tuner run`` takes to replace a stored study by a new one of the same name
START_OVER_FLAG = "--start-over"


@dataclass
class RunSummary:
    study_name: str
    storage: str
    trials_total: int
    #: ``evaluated + cached + infeasible + failed``: every trial this run stored once
    trials_this_run: int
    #: ok results measured by this run
    evaluated: int
    #: ok results reused (the cache, or a config already running for another trial)
    cached: int
    infeasible: int
    failed: int
    interrupted: bool
    stop_reason: str
    elapsed_s: float
    counts: dict[str, int] = field(default_factory=dict)
    #: the study's stored trials at the end (with their stored numbers), for its front
    results: StudyResults | None = None


def resume_seed(seed: int | None, n_stored: int) -> int | None:
    """The sampler seed of a run that starts with ``n_stored`` trials already stored: the
    study's seed for a fresh study, a different (but reproducible) one for each resume."""
    if seed is None or n_stored == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, n_stored]).generate_state(1)[0])


class Runner:
    """Runs one study to its budget. ``on_trial`` is called after each stored trial.

    ``warm_start``: parameter sets a fresh study evaluates first (a resumed study ignores
    them). ``enqueue``: parameter sets evaluated next, fresh study or not (those already
    evaluated are skipped). ``annotate(config)``: more user attributes for a trial's record.
    ``setup``: an already built ``StudySetup`` of ``spec`` (else built here).
    ``start_over``: delete a stored study of the same name first (instead of refusing a
    changed problem). ``progress``: ``True``/``"bar"`` a live bar, ``"lines"`` a line every
    ``progress_interval_s`` (logs), ``False`` none.
    """

    def __init__(self, spec: StudySpec, storage: str | None = None, *, trials: int | None = None,
                 wall_time_s: float | None = None, workers: int | None = None,
                 sampler: str | None = None, progress: bool | str = True,
                 on_trial: Callable[[FrozenTrial], None] | None = None,
                 warm_start: Sequence[dict[str, Any]] = (),
                 enqueue: Sequence[dict[str, Any]] = (),
                 annotate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 setup: StudySetup | None = None, start_over: bool = False,
                 progress_interval_s: float = 30.0) -> None:
        self.setup = setup or StudySetup.build(spec, sampler)
        self.spec = self.setup.spec
        self.trials_target = trials or spec.budget.trials
        self.wall_time_s = wall_time_s or spec.budget.wall_time_s
        if self.trials_target is None and self.wall_time_s is None:
            raise BadInput("budget", "give trials and/or wall_time_s (or --trials/--timeout)")
        self.workers = workers or spec.workers
        self.progress = progress
        self.progress_interval_s = progress_interval_s
        self.on_trial = on_trial
        self.warm_start = list(warm_start)
        self.enqueue = list(enqueue)
        self.annotate = annotate
        self.start_over = start_over
        # built before the storage is opened, so a bad sampler option touches nothing; a
        # resumed run gets another one, seeded for its part (``_open_studies``)
        self.sampler: Any = self.setup.make_sampler(self.spec.seed)
        self.rdb = open_rdb(storage or spec.storage)
        self.storage_label = redact(str(self.rdb.engine.url))
        self.cache = EvalCache(self.rdb.engine, self.fingerprint, self.evaluator_name)

    # the setup's parts, under the names callers use
    @property
    def space(self) -> Any:
        return self.setup.space

    @property
    def evaluator_name(self) -> str:
        return self.setup.evaluator_name

    @property
    def evaluator_cls(self) -> type:
        return self.setup.evaluator_cls

    @property
    def fingerprint(self) -> str:
        return self.setup.fingerprint

    @property
    def sampler_name(self) -> str:
        return self.setup.sampler_name

    # -- storage ------------------------------------------------------------------------
    def _open_studies(self) -> tuple[optuna.Study, int, list[FrozenTrial]]:
        spec = self.spec
        from tuner._fleet import live_workers

        try:
            sid = self.rdb.get_study_id_from_name(spec.name)
        except KeyError:
            sid = None
        if sid is not None and self.start_over:
            self.rdb.delete_study(sid)
            sid = None
        if sid is not None:
            self.setup.check_compatible(self.rdb, sid, f", or {START_OVER_FLAG} to replace "
                                                   "the stored study")
            workers = live_workers(self.rdb.engine, sid)
            if workers:
                raise BadInput("study", f"{spec.name!r} is shared by {workers} running "
                               "worker(s) (tuner worker); let them finish or stop them first")
            previous = self.rdb.get_all_trials(sid, deepcopy=False, states=(
                TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
        else:
            sid = self.rdb.create_new_study(
                [optuna.study.StudyDirection[d.upper()] for d in spec.directions], spec.name)
            previous = []
        attrs = {**self.setup.study_attrs(self.trials_target), **state_attrs("running")}
        for k, v in attrs.items():
            self.rdb.set_study_user_attr(sid, k, v)
        if previous:
            self.sampler = self.setup.make_sampler(resume_seed(spec.seed, len(previous)))
        mem = optuna.create_study(directions=spec.directions,  # type: ignore[arg-type]
                                  sampler=self.sampler,
                                  study_name=spec.name)
        if previous:
            mem.add_trials(previous)
        for params in self.enqueue if previous else self.warm_start + self.enqueue:
            mem.enqueue_trial(params, skip_if_exists=True)
        return mem, sid, previous

    def _set_state(self, sid: int, state: str, error: str | None = None) -> None:
        for k, v in state_attrs(state, error).items():
            self.rdb.set_study_user_attr(sid, k, v)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, config: dict[str, Any],
              result: EvalResult, cached: bool, eval_s: float) -> FrozenTrial:
        """Record one outcome (``tuner._record``): the stored form of the trial."""
        return _record.record(study, trial, config, result, self.spec.objectives,
                              self.spec.constraints, cached, eval_s,
                              self.annotate(config) if self.annotate else None)

    def record_study_attr(self, key: str, value: Any) -> None:
        """Store one more study attribute (e.g. the fidelity ladder's rounds)."""
        sid = self.rdb.get_study_id_from_name(self.spec.name)
        self.rdb.set_study_user_attr(sid, key, value)

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run the study under its writer lock (``BadInput`` when another run holds it)."""
        lock = StudyLock(self.rdb.engine, self.spec.name)
        lock.acquire()
        try:
            return self._run(lock)
        finally:
            lock.release()

    def _run(self, lock: StudyLock) -> RunSummary:
        from tuner._progress import StudyProgress

        study, sid, previous = self._open_studies()
        self.cache.load()
        t0 = time.monotonic()
        n_prev = len(previous)
        counts = {"evaluated": 0, "cached": 0, "infeasible": 0, "failed": 0}
        target = self.trials_target
        inflight: dict[str, list[tuple[optuna.Trial, dict[str, Any]]]] = {}
        asked = n_prev
        repeats = 0
        interrupted = False
        error: BaseException | None = None
        stop_reason = "budget reached"
        progress = StudyProgress(self.spec, total=target, done=n_prev, mode=self.progress,
                                 interval_s=self.progress_interval_s)
        progress.load(previous)
        #: this study's configs so far: a proposal already among them is a repeat
        tried = {params_key(t.params) for t in previous}
        stored = list(previous)
        writer = TrialWriter(self.rdb.engine, sid)
        pool = None

        def finish(trial: optuna.Trial, config: dict[str, Any], result: EvalResult,
                   cached: bool, eval_s: float, cache_row: dict[str, Any] | None = None
                   ) -> None:
            frozen = self._tell(study, trial, config, result, cached, eval_s)
            number = writer.write(frozen, [(EvalCache.table, cache_row)] if cache_row else [])
            status = frozen.user_attrs[_record.STATUS]
            counts[status if status != "ok" else "cached" if cached else "evaluated"] += 1
            if number != frozen.number:  # the storage held unfinished trials of others
                frozen = copy.copy(frozen)
                frozen.number = number
            stored.append(frozen)
            progress.advance(frozen)
            if self.on_trial:
                self.on_trial(frozen)

        def budget_left() -> bool:
            nonlocal stop_reason
            stop.check()
            if lock.lost:
                raise TunerError(f"study {self.spec.name!r}: another run took over its lock "
                                 "(this one was suspended too long); stopping")
            if target is not None and asked >= target:
                return False
            if self.wall_time_s is not None and time.monotonic() - t0 >= self.wall_time_s:
                stop_reason = "wall time reached"
                return False
            if exhausted(self.sampler, study):
                stop_reason = "every valid config evaluated"
                return False
            if repeats >= MAX_CONSECUTIVE_REPEATS:
                stop_reason = (f"sampler proposed {repeats} configs of this study again in a "
                               "row (space exhausted?)")
                return False
            return True

        # Ctrl-C and SIGTERM stop the loop at the next safe point; a second one at once
        stop = Interrupt(signal.SIGINT, signal.SIGTERM)
        with stop:
            try:
                pool = self.setup.pool(self.workers, EvalPool)
                with progress:
                    while True:
                        stop.check()
                        while pool.idle() and budget_left():
                            trial = study.ask()
                            asked += 1
                            config = self.space.suggest(trial)
                            key_p = params_key(self.space.param_values(config))
                            repeats = repeats + 1 if key_p in tried else 0
                            tried.add(key_p)
                            reasons = self.space.constraints(config)
                            if reasons:
                                finish(trial, config,
                                       EvalResult.infeasible("; ".join(reasons)), False, 0.0)
                                continue
                            key = config_key(config, self.fingerprint)
                            hit = self.cache.get(key)
                            if hit is not None:
                                finish(trial, config, hit, True, 0.0)
                                continue
                            if key in inflight:  # same config already running: share it
                                inflight[key].append((trial, config))
                                continue
                            inflight[key] = [(trial, config)]
                            pool.submit(key, config)
                        if not pool.busy():
                            break
                        for key, result, secs in pool.poll(0.05):
                            # failures are cached too: a config that crashed or timed out is
                            # not measured again (Kernel Tuner's rule)
                            row = self.cache.row(key, result) if key not in self.cache else None
                            waiting = inflight.pop(key)
                            for i, (trial, config) in enumerate(waiting):
                                finish(trial, config, result, i > 0, secs,
                                       row if i == 0 else None)
            except KeyboardInterrupt:
                interrupted = True
            except BaseException as exc:
                error = exc
            finally:
                with stop.hold():  # a signal that arrived at any point above counts
                    interrupted = interrupted or (stop.hit and error is None)
                    self._wind_down(pool, study, inflight, sid, interrupted, error)
        if interrupted:
            stop_reason = f"interrupted ({stop.describe()}): completed trials are stored"
        if error is not None:
            raise storage_error(error) or error
        total = n_prev + sum(counts.values())
        attrs = self.setup.study_attrs(self.trials_target)
        results = StudyResults(self.spec.name, attrs, attrs["tuner.objectives"], stored)
        return RunSummary(self.spec.name, self.storage_label, total, sum(counts.values()),
                          counts["evaluated"], counts["cached"], counts["infeasible"],
                          counts["failed"], interrupted, stop_reason, time.monotonic() - t0,
                          counts, results)

    def _wind_down(self, pool: Any, study: optuna.Study, inflight: dict[str, Any], sid: int,
                   interrupted: bool, error: BaseException | None) -> None:
        """Stop the evaluations and record how the run ended (best effort when the storage
        itself is what failed)."""
        if pool is not None:
            try:
                pool.close()
            except Exception:
                pass
        for waiting in inflight.values():  # abandoned evaluations: not recorded
            for trial, _ in waiting:
                try:
                    study.tell(trial, state=TrialState.FAIL)
                except Exception:
                    pass
        if error is not None:
            state, why = "failed", _one_line(storage_error(error) or error)
        else:
            state, why = ("interrupted" if interrupted else "finished"), None
        try:
            self._set_state(sid, state, why)
        except Exception as exc:  # e.g. the disk is full: say so, the reader sees no live lock
            print(f"warning: could not record the study state {state!r}: {_one_line(exc)}",
                  file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def run_study(spec: StudySpec, storage: str | None = None, **kwargs: Any) -> RunSummary:
    return Runner(spec, storage, **kwargs).run()


__all__ = ["MAX_CONSECUTIVE_REPEATS", "RunSummary", "Runner", "START_OVER_FLAG", "build",
           "default_memory_limit_mib", "pareto_mask", "resume_seed", "run_study"]

"""The study loop: ask -> suggest -> constraints -> cache -> evaluate (pool) -> tell -> store.

Sampling runs against an in-memory Optuna study; every finished trial is written through to the
RDB storage in one transaction (``create_new_trial`` with a template), so the loop pays one
commit per trial instead of Optuna's one per parameter/attribute, and a killed runner loses
only evaluations still in flight. On start, the stored trials are loaded back: re-running a
study resumes it.

Construction (space, evaluator, sampler, fingerprint) is ``tuner._setup.StudySetup``; turning
a result into a trial is ``tuner._record.record``. Both are shared with the fleet worker.
"""

from __future__ import annotations

import copy
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import _record
from tuner._errors import BadInput
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
from tuner._trial_writer import TrialWriter
from tuner.spec import StudySpec
from tuner.storage import EvalCache, open_rdb, redact

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class RunSummary:
    study_name: str
    storage: str
    trials_total: int
    trials_this_run: int
    evaluated: int
    cached: int
    infeasible: int
    failed: int
    interrupted: bool
    stop_reason: str
    elapsed_s: float
    counts: dict[str, int] = field(default_factory=dict)
    #: the study's stored trials at the end (with their stored numbers), for its front
    results: StudyResults | None = None


class Runner:
    """Runs one study to its budget. ``on_trial`` is called after each stored trial.

    ``warm_start``: parameter sets a fresh study evaluates first (a resumed study ignores
    them). ``enqueue``: parameter sets evaluated next, fresh study or not (those already
    evaluated are skipped). ``annotate(config)``: more user attributes for a trial's record.
    ``setup``: an already built ``StudySetup`` of ``spec`` (else built here).
    """

    def __init__(self, spec: StudySpec, storage: str | None = None, *, trials: int | None = None,
                 wall_time_s: float | None = None, workers: int | None = None,
                 sampler: str | None = None, progress: bool = True,
                 on_trial: Callable[[FrozenTrial], None] | None = None,
                 warm_start: Sequence[dict[str, Any]] = (),
                 enqueue: Sequence[dict[str, Any]] = (),
                 annotate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 setup: StudySetup | None = None) -> None:
        self.setup = setup or StudySetup.build(spec, sampler)
        self.spec = self.setup.spec
        self.sampler = self.setup.make_sampler(self.spec.seed)
        self.trials_target = trials or spec.budget.trials
        self.wall_time_s = wall_time_s or spec.budget.wall_time_s
        if self.trials_target is None and self.wall_time_s is None:
            raise BadInput("budget", "give trials and/or wall_time_s (or --trials/--timeout)")
        self.workers = workers or spec.workers
        self.progress = progress
        self.on_trial = on_trial
        self.warm_start = list(warm_start)
        self.enqueue = list(enqueue)
        self.annotate = annotate
        self.rdb = open_rdb(storage or spec.storage)
        self.storage_label = redact(str(self.rdb.engine.url))
        self.cache = EvalCache(self.rdb.engine, self.fingerprint, self.evaluator_name)
        self.penalty = _record.Penalty(self.spec.directions)

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
        try:
            sid = self.rdb.get_study_id_from_name(spec.name)
            self.setup.check_compatible(self.rdb, sid)
            previous = self.rdb.get_all_trials(sid, deepcopy=False, states=(
                TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
        except KeyError:
            sid = self.rdb.create_new_study(
                [optuna.study.StudyDirection[d.upper()] for d in spec.directions], spec.name)
            previous = []
        attrs = {**self.setup.study_attrs(self.trials_target), **state_attrs("running")}
        for k, v in attrs.items():
            self.rdb.set_study_user_attr(sid, k, v)
        mem = optuna.create_study(directions=spec.directions, sampler=self.sampler,
                                  study_name=spec.name)
        if previous:
            mem.add_trials(previous)
            self.penalty.load(previous)
        for params in self.enqueue if previous else self.warm_start + self.enqueue:
            mem.enqueue_trial(params, skip_if_exists=True)
        return mem, sid, previous

    def _set_state(self, sid: int, state: str) -> None:
        for k, v in state_attrs(state).items():
            self.rdb.set_study_user_attr(sid, k, v)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, config: dict[str, Any],
              result: EvalResult, cached: bool, eval_s: float) -> FrozenTrial:
        """Record one outcome (``tuner._record``): the stored form of the trial."""
        return _record.record(study, trial, config, result, self.spec.objectives,
                              self.spec.constraints, self.penalty, cached, eval_s,
                              self.annotate(config) if self.annotate else None)

    def record_study_attr(self, key: str, value: Any) -> None:
        """Store one more study attribute (e.g. the fidelity ladder's rounds)."""
        sid = self.rdb.get_study_id_from_name(self.spec.name)
        self.rdb.set_study_user_attr(sid, key, value)

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> RunSummary:
        from tuner._progress import StudyProgress

        study, sid, previous = self._open_studies()
        self.cache.load()
        t0 = time.monotonic()
        n_prev = len(previous)
        counts = {"evaluated": 0, "cached": 0, "infeasible": 0, "failed": 0}
        target = self.trials_target
        pool = self.setup.pool(self.workers, EvalPool)
        inflight: dict[str, list[tuple[optuna.Trial, dict[str, Any]]]] = {}
        asked = n_prev
        repeats = 0
        interrupted = False
        stop_reason = "budget reached"
        progress = StudyProgress(self.spec, total=target, done=n_prev, enabled=self.progress)
        values_ok = [t.values for t in previous
                     if t.state == TrialState.COMPLETE and t.user_attrs.get(_record.FEASIBLE)]
        stored = list(previous)

        writer = TrialWriter(self.rdb.engine, sid)

        def finish(trial: optuna.Trial, config: dict[str, Any], result: EvalResult,
                   cached: bool, eval_s: float, cache_row: dict[str, Any] | None = None
                   ) -> None:
            frozen = self._tell(study, trial, config, result, cached, eval_s)
            number = writer.write(frozen, [(EvalCache.table, cache_row)] if cache_row else [])
            status = frozen.user_attrs[_record.STATUS]
            if status != "ok":
                counts[status] += 1
            if frozen.user_attrs[_record.FEASIBLE]:
                values_ok.append(frozen.values)
            progress.advance(values_ok)
            if self.on_trial:
                self.on_trial(frozen)
            if number != frozen.number:  # the storage held unfinished trials of others
                frozen = copy.copy(frozen)
                frozen.number = number
            stored.append(frozen)

        def budget_left() -> bool:
            nonlocal stop_reason
            sigint.check()
            if target is not None and asked >= target:
                return False
            if self.wall_time_s is not None and time.monotonic() - t0 >= self.wall_time_s:
                stop_reason = "wall time reached"
                return False
            if exhausted(self.sampler, study):
                stop_reason = "every valid config evaluated"
                return False
            if repeats >= MAX_CONSECUTIVE_REPEATS:
                stop_reason = (f"sampler proposed {repeats} already-evaluated configs in a row "
                               "(space exhausted?)")
                return False
            return True

        sigint = Interrupt(signal.SIGINT)  # budget_left() checks it too
        try:
            with sigint, progress:
                while True:
                    sigint.check()
                    while pool.idle() and budget_left():
                        trial = study.ask()
                        asked += 1
                        config = self.space.suggest(trial)
                        reasons = self.space.constraints(config)
                        if reasons:
                            finish(trial, config, EvalResult.infeasible("; ".join(reasons)),
                                   False, 0.0)
                            continue
                        key = config_key(config, self.fingerprint)
                        hit = self.cache.get(key)
                        if hit is not None:
                            repeats += 1
                            counts["cached"] += 1
                            finish(trial, config, hit, True, 0.0)
                            continue
                        repeats = 0
                        if key in inflight:  # same config already running: share its result
                            inflight[key].append((trial, config))
                            continue
                        inflight[key] = [(trial, config)]
                        pool.submit(key, config)
                    if not pool.busy():
                        break
                    for key, result, secs in pool.poll(0.05):
                        # failures are cached too: a config that crashed or timed out is not
                        # measured again (Kernel Tuner's rule)
                        row = self.cache.row(key, result) if key not in self.cache else None
                        waiting = inflight.pop(key)
                        counts["evaluated"] += 1
                        for i, (trial, config) in enumerate(waiting):
                            finish(trial, config, result, i > 0, secs, row if i == 0 else None)
        except KeyboardInterrupt:
            interrupted = True
            stop_reason = "interrupted (Ctrl-C): completed trials are stored"
        finally:
            pool.close()
            for waiting in inflight.values():  # abandoned evaluations: not recorded
                for trial, _ in waiting:
                    try:
                        study.tell(trial, state=TrialState.FAIL)
                    except Exception:
                        pass
            self._set_state(sid, "interrupted" if interrupted else "finished")
        total = len(self.rdb.get_all_trials(sid, deepcopy=False))
        attrs = self.setup.study_attrs(self.trials_target)
        results = StudyResults(self.spec.name, attrs, attrs["tuner.objectives"], stored)
        return RunSummary(self.spec.name, self.storage_label, total, total - n_prev,
                          counts["evaluated"], counts["cached"], counts["infeasible"],
                          counts["failed"], interrupted, stop_reason, time.monotonic() - t0,
                          counts, results)


def run_study(spec: StudySpec, storage: str | None = None, **kwargs: Any) -> RunSummary:
    return Runner(spec, storage, **kwargs).run()


__all__ = ["MAX_CONSECUTIVE_REPEATS", "RunSummary", "Runner", "build",
           "default_memory_limit_mib", "pareto_mask", "run_study"]

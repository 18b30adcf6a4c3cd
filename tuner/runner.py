"""The study loop: ask -> suggest -> constraints -> cache -> evaluate (pool) -> tell -> store.

Sampling runs against an in-memory Optuna study; every finished trial is written through to the
RDB storage in one transaction (``create_new_trial`` with a template), so the loop pays one
commit per trial instead of Optuna's one per parameter/attribute, and a killed runner loses
only evaluations still in flight. On start, the stored trials are loaded back: re-running a
study resumes it.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import registry
from tuner._errors import BadInput
from tuner._evaluator import EvalResult, Status, config_key
from tuner._interrupt import Interrupt
from tuner._pareto import pareto_mask
from tuner._pool import EvalPool
from tuner._trial_writer import TrialWriter
from tuner.samplers import default_sampler, make_sampler
from tuner.spec import StudySpec, finish_spec
from tuner.storage import EvalCache, open_rdb, redact, redact_secrets

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: stop when the sampler proposes only already-evaluated configs this many times in a row
MAX_CONSECUTIVE_REPEATS = 500


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


def build(spec: StudySpec, sampler_name: str | None = None) -> tuple[Any, Any, Any, str]:
    """Space, evaluator class, sampler and the evaluator's name for a spec."""
    space_cls = registry.space_class(spec.space.domain)
    space = space_cls(spec.space.context, spec.space.params)
    evaluator_name = spec.evaluator.name or space.default_evaluator
    if not evaluator_name:
        raise BadInput("evaluator.name", "required for this domain; valid: "
                       + ", ".join(registry.EVALUATORS))
    evaluator_cls = registry.evaluator_class(evaluator_name)
    finish_spec(spec, space, evaluator_cls)
    name = sampler_name or spec.sampler.name or default_sampler(space, spec.directions)
    options = spec.sampler.options if (sampler_name is None or sampler_name ==
                                       spec.sampler.name) else {}
    sampler = make_sampler(name, space, spec.directions, spec.seed, options)
    return space, evaluator_cls, sampler, evaluator_name


def default_memory_limit_mib(workers: int) -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        total = 16384
    return max(2048, int(total * 0.75 / max(1, workers)))


class Runner:
    """Runs one study to its budget. ``on_trial`` is called after each stored trial."""

    def __init__(self, spec: StudySpec, storage: str | None = None, *, trials: int | None = None,
                 wall_time_s: float | None = None, workers: int | None = None,
                 sampler: str | None = None, progress: bool = True,
                 on_trial: Callable[[FrozenTrial], None] | None = None) -> None:
        self.spec = spec
        self.space, self.evaluator_cls, self.sampler, self.evaluator_name = build(spec, sampler)
        self.sampler_name = sampler or spec.sampler.name or default_sampler(
            self.space, spec.directions)
        self.evaluator = self.evaluator_cls(**spec.evaluator.options)
        self.fingerprint = self.evaluator.fingerprint()
        self.trials_target = trials or spec.budget.trials
        self.wall_time_s = wall_time_s or spec.budget.wall_time_s
        if self.trials_target is None and self.wall_time_s is None:
            raise BadInput("budget", "give trials and/or wall_time_s (or --trials/--timeout)")
        self.workers = workers or spec.workers
        self.progress = progress
        self.on_trial = on_trial
        self.rdb = open_rdb(storage or spec.storage)
        self.storage_label = redact(str(self.rdb.engine.url))
        self.cache = EvalCache(self.rdb.engine, self.fingerprint, self.evaluator_name)
        self._penalty: list[float | None] = [None] * len(spec.objectives)

    # -- storage ------------------------------------------------------------------------
    def _open_studies(self) -> tuple[optuna.Study, int, list[FrozenTrial]]:
        spec = self.spec
        try:
            sid = self.rdb.get_study_id_from_name(spec.name)
            self._check_compatible(sid)
            previous = self.rdb.get_all_trials(sid, deepcopy=False, states=(
                TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
        except KeyError:
            sid = self.rdb.create_new_study(
                [optuna.study.StudyDirection[d.upper()] for d in spec.directions], spec.name)
            previous = []
        attrs = {**self._study_attrs(), "tuner.state": "running",
                 "tuner.updated_at": time.time()}
        for k, v in attrs.items():
            self.rdb.set_study_user_attr(sid, k, v)
        mem = optuna.create_study(directions=spec.directions, sampler=self.sampler,
                                  study_name=spec.name)
        if previous:
            mem.add_trials(previous)
            for t in previous:
                if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible"):
                    self._update_penalty(t.values)
        return mem, sid, previous

    def _check_compatible(self, sid: int) -> None:
        """Refuse to continue a stored study under other objectives or another domain."""
        spec = self.spec
        stored_dirs = [d.name.lower() for d in self.rdb.get_study_directions(sid)]
        if stored_dirs != spec.directions:
            raise BadInput("objectives", f"study {spec.name!r} already exists with "
                           f"directions {stored_dirs}; use another name to change them")
        attrs = self.rdb.get_study_user_attrs(sid)
        if attrs.get("tuner.domain") not in (None, spec.space.domain):
            raise BadInput("space.domain", f"study {spec.name!r} already exists for "
                           f"domain {attrs['tuner.domain']!r}; use another name")

    def _study_attrs(self) -> dict[str, Any]:
        """What the study records about itself (secrets in options masked)."""
        spec = self.spec
        return {
            "tuner.spec": redact_secrets(spec.model_dump(mode="json", exclude={"storage"})),
            "tuner.domain": spec.space.domain, "tuner.evaluator": self.evaluator_name,
            "tuner.sampler": self.sampler_name, "tuner.fingerprint": self.fingerprint,
            "tuner.objectives": [o.model_dump() for o in spec.objectives],
            "tuner.constraints": [c.model_dump() for c in spec.constraints],
            "tuner.trials_target": self.trials_target,
        }

    def _set_state(self, sid: int, state: str) -> None:
        self.rdb.set_study_user_attr(sid, "tuner.state", state)
        self.rdb.set_study_user_attr(sid, "tuner.updated_at", time.time())

    # -- results ------------------------------------------------------------------------
    def _update_penalty(self, values: list[float]) -> None:
        for i, (v, d) in enumerate(zip(values, self.spec.directions)):
            p = self._penalty[i]
            worse = p is None or (v > p if d == "minimize" else v < p)
            self._penalty[i] = v if worse else p

    def _values_for(self, result: EvalResult) -> list[float] | None:
        vals = [result.metrics.get(o.metric) for o in self.spec.objectives]
        if all(v is not None and math.isfinite(v) for v in vals):
            return [float(v) for v in vals]  # type: ignore[arg-type]
        return None

    def _tell(self, study: optuna.Study, trial: optuna.Trial, config: dict[str, Any],
              result: EvalResult, cached: bool, eval_s: float) -> FrozenTrial:
        """Record one outcome; infeasible results carry penalty values and constraints > 0."""
        feasible = False
        violations: dict[str, float] = {}
        reason = result.reason
        values = self._values_for(result)
        if result.status == Status.OK and values is None:
            missing = [o.metric for o in self.spec.objectives
                       if o.metric not in result.metrics]
            result = EvalResult.failed(f"evaluator did not report objective metric(s) {missing}"
                                       f" (reported: {sorted(result.metrics)})")
            reason = result.reason
        if result.status == Status.OK:
            violations = {str(c): c.violation(dict(result.metrics))
                          for c in self.spec.constraints}
            broken = [c for c, v in violations.items() if v > 0]
            feasible = not broken
            if broken:
                reason = "violates " + ", ".join(
                    f"{c} (got {result.metrics.get(c.split()[0], float('nan')):.4g})"
                    for c in broken)
        elif result.status == Status.INFEASIBLE:
            violations = {"feasible": 1.0}
        user = {"config": config, "metrics": dict(result.metrics), "status": result.status.value,
                "reason": reason, "feasible": feasible, "cached": cached,
                "eval_s": round(eval_s, 6), "artifacts": dict(result.artifacts)}
        for k, v in user.items():
            trial.set_user_attr(k, v)
        if result.status == Status.FAILED:
            study.tell(trial, state=TrialState.FAIL)
        else:
            if values is None:
                values = [p if p is not None else (1e12 if d == "minimize" else -1e12)
                          for p, d in zip(self._penalty, self.spec.directions)]
            elif feasible:
                self._update_penalty(values)
            for name, v in (violations or {"feasible": 0.0}).items():
                trial.set_constraint(name, v)
            study.tell(trial, values)
        return study._storage.get_trial(trial._trial_id)


    # -- the loop -----------------------------------------------------------------------
    def run(self) -> RunSummary:
        from tuner._progress import StudyProgress

        study, sid, previous = self._open_studies()
        self.cache.load()
        t0 = time.monotonic()
        n_prev = len(previous)
        counts = {"evaluated": 0, "cached": 0, "infeasible": 0, "failed": 0}
        target = self.trials_target
        memory = self.spec.budget.memory_limit_mib or default_memory_limit_mib(self.workers)
        pool = EvalPool(self.evaluator_name, self.spec.evaluator.options, self.workers,
                        self.spec.budget.trial_timeout_s, memory)
        inflight: dict[str, list[tuple[optuna.Trial, dict[str, Any]]]] = {}
        asked = n_prev
        repeats = 0
        interrupted = False
        stop_reason = "budget reached"
        progress = StudyProgress(self.spec, total=target, done=n_prev, enabled=self.progress)
        values_ok = [t.values for t in previous
                     if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible")]

        writer = TrialWriter(self.rdb.engine, sid)

        def finish(trial: optuna.Trial, config: dict[str, Any], result: EvalResult,
                   cached: bool, eval_s: float, cache_row: dict[str, Any] | None = None
                   ) -> None:
            frozen = self._tell(study, trial, config, result, cached, eval_s)
            writer.write(frozen, [(EvalCache.table, cache_row)] if cache_row else [])
            status = frozen.user_attrs["status"]
            if status != "ok":
                counts[status] += 1
            if frozen.user_attrs["feasible"]:
                values_ok.append(frozen.values)
            progress.advance(values_ok)
            if self.on_trial:
                self.on_trial(frozen)

        def budget_left() -> bool:
            nonlocal stop_reason
            sigint.check()
            if target is not None and asked >= target:
                return False
            if self.wall_time_s is not None and time.monotonic() - t0 >= self.wall_time_s:
                stop_reason = "wall time reached"
                return False
            exhausted = getattr(self.sampler, "exhausted", None)
            if exhausted is not None and exhausted(study):
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
        return RunSummary(self.spec.name, self.storage_label, total, total - n_prev,
                          counts["evaluated"], counts["cached"], counts["infeasible"],
                          counts["failed"], interrupted, stop_reason, time.monotonic() - t0,
                          counts)


def run_study(spec: StudySpec, storage: str | None = None, **kwargs: Any) -> RunSummary:
    return Runner(spec, storage, **kwargs).run()


__all__ = ["RunSummary", "Runner", "build", "pareto_mask", "run_study"]

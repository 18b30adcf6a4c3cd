"""Exhaustive sweeps: every valid config of a finite space scored in-process, in batches.

``sampler = "exhaustive"`` (and the default, below a size limit, for analytical evaluators:
``tuner.samplers.default_sampler``) makes ``tuner run`` enumerate the space's valid configs and
score them with the evaluator directly, batch after batch, with no worker process round trip,
no sampler and no storage write per config. Only an evaluator that declares itself
``analytical`` (a pure, cheap function of the config: the simulators) is swept; measuring
evaluators keep the trial loop (``grid`` visits every config there, trial by trial).

What is kept (``tuner._sweep_tally``): counts by outcome, the exact optimum of every objective,
the Pareto front, the best configs per objective and a uniform sample of everything scored.
What is stored: those configs as ordinary trials, through the trial record
(``tuner._record``) and the trial writer (one transaction per trial), so every Optuna tool and
the dashboard read them; each carries the user attribute ``sweep_role`` (``front``,
``best:<metric>``, ``sample``). The study attribute ``tuner.sweep`` holds the sweep's numbers:
configs scored, outcomes, the optimum per objective, the front's size, what was stored, and
whether the sweep completed.

With ``workers > 1`` the enumeration stays in this process and batches go to forked
processes that each keep a tally; the tallies merge to the same result as one process would
get. Ctrl-C (or the study's wall time) stops after the batches in flight; what was scored so
far is summarised and stored, and the study is marked interrupted (exit 130).
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from tuner import _record
from tuner._errors import BadInput
from tuner._interrupt import Interrupt
from tuner._setup import StudySetup, state_attrs
from tuner._space import params_key
from tuner._sweep_pool import evaluate_many, next_batch_size, scan_pool
from tuner._sweep_progress import SweepProgress
from tuner._sweep_tally import Scored, Tally
from tuner._trial_writer import TrialWriter

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: study attribute with the sweep's numbers; trial user attribute naming why it was stored
SWEEP_ATTR = "tuner.sweep"
ROLE_ATTR = "sweep_role"
#: what a sweep stores by default (``[sampler.options]`` of ``exhaustive`` override them)
DEFAULT_OPTIONS: dict[str, int] = {"sample": 200, "best": 10, "max_front": 1000}



def why_not_sweepable(setup: StudySetup) -> str | None:
    """Why ``setup``'s study cannot be swept (None: it can)."""
    if not getattr(setup.evaluator_cls, "analytical", False):
        return (f"exhaustive scores every config in-process and needs an analytical evaluator; "
                f"{setup.evaluator_name} is not one (use grid to visit every valid config "
                "trial by trial, or cost-model)")
    if not setup.space.is_finite():
        cont = [k for k, p in setup.space.params.items() if getattr(p, "step", 1) is None]
        return (f"exhaustive needs a finite space; continuous parameters: {', '.join(cont)} "
                "(give them a step, or use cost-model)")
    return None


@dataclass
class SweepSummary:
    """What ``tuner run`` reports after a sweep (``attrs`` is what ``tuner.sweep`` holds)."""

    study_name: str
    storage: str
    attrs: dict[str, Any]
    stored: int
    interrupted: bool
    elapsed_s: float
    results: Any = None  # the study's stored trials (tuner._results.StudyResults)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete"))

    def line(self) -> str:
        a = self.attrs
        c = a["counts"]
        rate = f"{a['configs_per_s']:,.0f}"
        head = ("swept" if a["complete"] else "partial sweep:")
        return (f"{head} {c['scored']:,} valid configs in {a['seconds']:.1f} s ({rate}/s, "
                f"{a['workers']} process{'es' if a['workers'] > 1 else ''}): "
                f"{c['feasible']:,} feasible, {c['violating']:,} violate a constraint, "
                f"{c['infeasible']:,} infeasible, {c['failed']:,} failed; stored "
                f"{self.stored} trials (front {a['stored']['front']}, best "
                f"{a['stored']['best']}, uniform sample {a['stored']['sample']}); "
                f"{a['stop_reason']}")


class Sweep:
    """Sweeps one study (see the module doc). ``progress``: "bar", "lines" or None."""

    def __init__(self, setup: StudySetup, storage: str | None = None, *,
                 workers: int | None = None, wall_time_s: float | None = None,
                 progress: str | None = None) -> None:
        why = why_not_sweepable(setup)
        if why:
            raise BadInput("sampler.name", why)
        self.setup = setup
        self.spec = setup.spec
        self.space = setup.space
        self.options = sweep_options(setup.sampler_options)
        self.workers = max(1, int(workers or self.spec.workers))
        self.wall_time_s = wall_time_s or self.spec.budget.wall_time_s
        self.progress_mode = progress
        self.seed = self.spec.seed or 0
        self.objectives = [(o.metric, o.direction) for o in self.spec.objectives]
        self._storage = storage

    def new_tally(self) -> Tally:
        return Tally(self.objectives, list(self.spec.constraints), self.options["best"],
                     self.options["sample"], self.seed)

    # -- the run -------------------------------------------------------------------------
    def run(self) -> SweepSummary:
        from tuner._results import StudyResults
        from tuner.storage import open_rdb, redact

        rdb = open_rdb(self._storage or self.spec.storage)
        sid = self._open_study(rdb)
        t0 = time.monotonic()
        tally = self.new_tally()
        interrupted, reason = False, "every valid config scored"
        sigint = Interrupt(signal.SIGINT)
        with sigint:
            try:
                if self.workers > 1:
                    stopped = scan_pool(self, tally, sigint)
                else:
                    stopped = self._scan_local(tally, sigint)
                if stopped:
                    reason = stopped
            except KeyboardInterrupt:
                interrupted = True
                reason = "interrupted (Ctrl-C): what was scored so far is stored"
            scan_s = time.monotonic() - t0
            stored, counts = 0, dict[str, int]()
            try:
                stored, counts = self._store(rdb, sid, tally)
            finally:
                attrs = self._attrs(tally, scan_s, time.monotonic() - t0,
                                    complete=not interrupted and not stopped_early(reason),
                                    reason=reason)
                attrs["stored"] = counts
                rdb.set_study_user_attr(sid, SWEEP_ATTR, attrs)
                for k, v in state_attrs("interrupted" if interrupted else "finished").items():
                    rdb.set_study_user_attr(sid, k, v)
        trials = rdb.get_all_trials(sid, deepcopy=False)
        study_attrs = rdb.get_study_user_attrs(sid)
        results = StudyResults(self.spec.name, study_attrs, study_attrs["tuner.objectives"],
                               trials)
        return SweepSummary(self.spec.name, redact(str(rdb.engine.url)), attrs, stored,
                            interrupted, time.monotonic() - t0, results)

    def _open_study(self, rdb: Any) -> int:
        spec = self.spec
        try:
            sid = rdb.get_study_id_from_name(spec.name)
            self.setup.check_compatible(rdb, sid)
        except KeyError:
            sid = rdb.create_new_study(
                [optuna.study.StudyDirection[d.upper()] for d in spec.directions], spec.name)
        attrs = {**self.setup.study_attrs(None), **state_attrs("running"),
                 SWEEP_ATTR: {"complete": False, "stop_reason": "running"}}
        for k, v in attrs.items():
            rdb.set_study_user_attr(sid, k, v)
        return sid

    def _attrs(self, tally: Tally, scan_s: float, total_s: float, complete: bool,
               reason: str) -> dict[str, Any]:
        c = tally.counts
        return {
            "complete": complete, "stop_reason": reason, "counts": c.as_dict(),
            "configs_scored": c.scored, "seconds": round(total_s, 3),
            "scan_seconds": round(scan_s, 3),
            "configs_per_s": round(c.scored / total_s, 1) if total_s > 0 else None,
            "workers": self.workers, "optimum": tally.optimum(),
            "front_size": tally.front_size(), "sample_size": self.options["sample"],
            "sample_of": c.scored, "best_per_objective": self.options["best"],
            "seed": self.seed, "fingerprint": self.setup.fingerprint,
        }

    # -- scoring -------------------------------------------------------------------------
    def progress(self) -> SweepProgress:
        return SweepProgress(self.spec.name, self.objectives, self.progress_mode)

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        """Valid configs in batches; the size adapts through ``self._size``."""
        it = self.space.enumerate(valid_only=True)
        while True:
            batch = list(itertools.islice(it, self._size))
            if not batch:
                return
            yield batch

    def out_of_time(self, t0: float) -> bool:
        return self.wall_time_s is not None and time.monotonic() - t0 >= self.wall_time_s

    def _scan_local(self, tally: Tally, sigint: Interrupt) -> str:
        from tuner.registry import make_evaluator

        evaluator = make_evaluator(self.setup.evaluator_name, self.spec.evaluator.options)
        evaluator.setup()
        self._size = self.options["batch"] or 8
        t0 = time.monotonic()
        index = 0
        values_of = self.space.param_values
        try:
            with self.progress() as progress:
                for configs in self.batches():
                    t1 = time.perf_counter()
                    results = evaluate_many(evaluator, configs)
                    per = (time.perf_counter() - t1) / len(configs)
                    for cfg, res in zip(configs, results):
                        tally.add(index, values_of(cfg), res, per)
                        index += 1
                    progress.update(index, tally.best_values(), tally.counts.feasible)
                    if not self.options["batch"]:
                        self._size = next_batch_size(per)
                    sigint.check()
                    if self.out_of_time(t0):
                        return "wall time reached: what was scored so far is stored"
        finally:
            evaluator.teardown()
        return ""

    # -- storing -------------------------------------------------------------------------
    def picks(self, tally: Tally) -> list[tuple[Scored, list[str]]]:
        """What is stored, with why: the front (or the best config), the best per objective,
        then the uniform sample; a config picked twice is stored once with both roles."""
        chosen: dict[int, tuple[Scored, list[str]]] = {}

        def pick(items: Sequence[Scored], role: str) -> None:
            for s in items:
                chosen.setdefault(s.index, (s, []))[1].append(role)

        if len(self.objectives) > 1:
            pick(tally.front(self.options["max_front"]), "front")
        for j, (metric, _) in enumerate(self.objectives):
            pick(tally.best(j), f"best:{metric}")
        pick(tally.sample(), "sample")
        return list(chosen.values())

    def _store(self, rdb: Any, sid: int, tally: Tally) -> tuple[int, dict[str, int]]:
        picks = self.picks(tally)
        stored_keys = {params_key(t.params) for t in rdb.get_all_trials(sid, deepcopy=False)}
        directions: Any = self.spec.directions
        mem = optuna.create_study(directions=directions,
                                  sampler=optuna.samplers.RandomSampler(seed=self.seed))
        writer = TrialWriter(rdb.engine, sid)
        counts = {"front": 0, "best": 0, "sample": 0, "already_stored": 0}
        n = 0
        for s, roles in picks:
            if params_key(s.values) in stored_keys:
                counts["already_stored"] += 1
                continue
            mem.enqueue_trial(s.values)
            trial = mem.ask()
            config = self.space.suggest(trial)
            trial.set_user_attr(ROLE_ATTR, roles)
            frozen = _record.record(mem, trial, config, s.result, self.spec.objectives,
                                    self.spec.constraints, False, s.eval_s)
            writer.write(frozen)
            stored_keys.add(params_key(s.values))
            n += 1
            for r in {r.split(":")[0] for r in roles}:
                counts[r] += 1
        return n, counts


def stopped_early(reason: str) -> bool:
    return reason.startswith("wall time")


def sweep_options(options: dict[str, Any]) -> dict[str, Any]:
    """The sweep's settings from ``[sampler.options]`` (checked by the ``exhaustive``
    factory): ``sample``, ``best``, ``max_front`` and ``batch`` (None: adaptive)."""
    from tuner.samplers._exhaustive import check_options

    out: dict[str, Any] = {**DEFAULT_OPTIONS, "batch": None}
    out.update(check_options(dict(options)))
    return out


def sweep_note(attrs: dict[str, Any]) -> str:
    """One paragraph (markdown) saying what a swept study's trials are, from ``tuner.sweep``:
    the dashboard shows it above the study's plots."""
    c = attrs.get("counts") or {}
    stored = attrs.get("stored") or {}
    head = ("Exhaustive sweep" if attrs.get("complete") else
            f"Partial exhaustive sweep ({attrs.get('stop_reason', 'running')})")
    opt = "; ".join(f"{o['metric']} {o['value']:.6g}" for o in attrs.get("optimum") or [] if o)
    return (f"**{head}**: {c.get('scored', 0):,} valid configs scored "
            f"({c.get('feasible', 0):,} feasible). The trials here are not all of them: the "
            f"Pareto front ({attrs.get('front_size', 0):,} configs, {stored.get('front', 0)} "
            f"stored), the best {attrs.get('best_per_objective', 0)} per objective and a "
            f"**uniform random sample** of {stored.get('sample', 0)} configs (user attribute "
            f"`sweep_role`). Outcome shares and importances below describe the stored trials; "
            f"only the sample stands for the whole space. Exact optimum: {opt or 'none'}.")


def run_sweep(setup: StudySetup, storage: str | None = None,
              **kwargs: Any) -> SweepSummary:
    return Sweep(setup, storage, **kwargs).run()


__all__ = ["DEFAULT_OPTIONS", "ROLE_ATTR", "SWEEP_ATTR", "Sweep", "SweepSummary",
           "evaluate_many", "run_sweep", "sweep_note", "sweep_options", "why_not_sweepable"]

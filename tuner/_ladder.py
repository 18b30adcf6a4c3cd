"""The fidelity ladder inside one study: screen with a simulator, measure its best for real,
recalibrate the simulator from the residuals, re-rank, measure what changed.

A study file with a ``[fidelity]`` table runs this instead of a sampler::

    [evaluator]
    name = "serving-real"            # the measure evaluator: its results are the trials
    [fidelity]
    screen = "serving-sim"           # an analytical evaluator with a calibratable profile
    top_k = 8                        # configs measured per round
    explore = 2                      # and configs that spread over the space (default 0)
    rounds = 3
    recalibrate = true

Each round the screen scores the candidates (every valid config of a finite space up to
``pool``, else ``pool`` distinct valid samples), ranks its predicted front (non-dominated rank
under the study's objectives and constraints, then the first objective), and the best
``top_k`` not yet measured are measured through the normal runner (pool, timeouts, cache,
storage), with ``explore`` more that lie farthest from everything measured or chosen (greedy
maximin over the knobs' levels): the top of a front is often near-duplicates (two cache
sizes of one plan), which cannot tell a profile's constants apart, and a calibration that
never saw a single-slot or single-thread run extrapolates to them badly. Each measured trial
also stores what the screen predicted for it, as ``predicted_<metric>`` beside the measured
metrics (what the dashboard's Fidelity page reads), and its round (``fidelity_round``). With
``recalibrate``, the screen's stack profile is then fitted to every measurement so far
(``tuner calibrate``'s fit), and the next round ranks with it. The study records each round's
prediction error before recalibration and the constants in effect (attribute
``tuner.fidelity``); ``profile_out`` writes the final calibrated profile.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner._errors import BadInput
from tuner._pareto import pareto_mask
from tuner._space import params_key

#: metrics whose prediction error each round reports, besides the objectives
ERROR_METRICS = ("ttft_ms_p50", "tpot_ms_p50", "throughput_tok_s", "step_time_s",
                 "tokens_per_s", "time_us", "latency_ms")


@dataclass
class Round:
    number: int
    measured: list[int] = field(default_factory=list)  # trial numbers
    spread: list[int] = field(default_factory=list)  # those chosen by ``explore``
    #: metric -> median |predicted / measured - 1| over this round's measurements, with the
    #: profile in effect when they were chosen (before this round's recalibration)
    error: dict[str, float] = field(default_factory=dict)
    constants: dict[str, float] = field(default_factory=dict)  # profile used to rank

    def line(self) -> str:
        errs = ", ".join(f"{m} {100 * e:.0f}%" for m, e in self.error.items())
        spread = f" ({len(self.spread)} spread)" if self.spread else ""
        return (f"round {self.number}: measured {len(self.measured)} configs{spread}; screen "
                f"error before recalibration: {errs or 'n/a'}")


def candidates(space: Any, pool: int, seed: int) -> list[dict[str, Any]]:
    """Every valid config of a finite space up to ``pool``, else ``pool`` distinct samples."""
    if space.is_finite() and space.size() <= pool:
        return list(space.enumerate(valid_only=True))
    rng = random.Random(seed)
    seen: dict[Any, dict[str, Any]] = {}
    for _ in range(pool * 20):
        cfg = space.sample(rng)
        if not space.constraints(cfg):
            seen.setdefault(params_key(space.param_values(cfg)), cfg)
            if len(seen) >= pool:
                break
    return list(seen.values())


def _levels(configs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Each knob's values in the pool, as positions in [0, 1] (sorted, booleans and names
    included): the coordinates ``spread`` measures distance in."""
    out = {}
    for k in sorted({k for c in configs for k in c}):
        vals = sorted({repr(c.get(k)) for c in configs},
                      key=lambda v: (0, float(v), "") if _number(v) else (1, 0.0, v))
        out[k] = {v: i / max(1, len(vals) - 1) for i, v in enumerate(vals)}
    return out


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def spread(params: Sequence[Mapping[str, Any]], taken: Sequence[Mapping[str, Any]],
           n: int) -> list[int]:
    """Indices of ``n`` of ``params`` chosen one by one, each the farthest (Euclidean, over
    the knobs' level positions) from ``taken`` and those already chosen."""
    levels = _levels([*params, *taken])

    def point(p: Mapping[str, Any]) -> list[float]:
        return [levels[k][repr(p.get(k))] for k in levels]

    pts = [point(p) for p in params]
    near = [math.inf] * len(pts)
    for q in map(point, taken):
        near = [min(d, math.dist(p, q)) for d, p in zip(near, pts)]
    chosen: list[int] = []
    for _ in range(min(n, len(pts))):
        best = max((i for i in range(len(pts)) if i not in chosen), key=lambda i: near[i])
        if near[best] == 0:
            break
        chosen.append(best)
        near = [min(d, math.dist(p, pts[best])) for d, p in zip(near, pts)]
    return chosen


def rank(predictions: Sequence[tuple[dict[str, Any], Mapping[str, float]]], objectives: Any,
         constraints: Any) -> list[dict[str, Any]]:
    """Configs by predicted non-dominated rank (feasible first), then the first objective."""
    feasible: list[tuple[dict[str, Any], list[float]]] = []
    rest: list[tuple[dict[str, Any], list[float]]] = []
    for cfg, m in predictions:
        got = [m.get(o.metric) for o in objectives]
        vals = [v for v in got if v is not None and math.isfinite(v)]
        if len(vals) < len(got):
            continue
        signed = [v if o.direction == "minimize" else -v for v, o in zip(vals, objectives)]
        ok = all(c.violation(dict(m)) <= 0 for c in constraints)
        (feasible if ok else rest).append((cfg, signed))
    order: list[dict[str, Any]] = []
    for group in (feasible, rest):
        remaining = group
        while remaining:
            mask = pareto_mask([s for _, s in remaining], ["minimize"] * len(objectives))
            front = sorted((p for p, keep in zip(remaining, mask) if keep), key=lambda p: p[1])
            order += [cfg for cfg, _ in front]
            remaining = [p for p, keep in zip(remaining, mask) if not keep]
    return order


def median_errors(pairs: list[tuple[Mapping[str, float], Mapping[str, float]]],
                  metrics: list[str]) -> dict[str, float]:
    out = {}
    for m in metrics:
        errs = [abs(p[m] / q[m] - 1) for p, q in pairs
                if p.get(m) and q.get(m) and math.isfinite(p[m]) and q[m] > 0]
        if errs:
            out[m] = statistics.median(errs)
    return out


def run_ladder(spec: Any, storage: str | None, *, progress: bool | str = True,
               log: Callable[[str], None] = print) -> tuple[Any, list[Round]]:
    """Run the study's ladder; the last round's ``RunSummary`` and every round's record."""
    from tuner._setup import StudySetup
    from tuner.evaluators._calibration import Row, fit_profile
    from tuner.registry import make_evaluator
    from tuner.runner import Runner

    fid = spec.fidelity
    setup = StudySetup.build(spec)
    screen = make_evaluator(fid.screen, fid.screen_options)
    if not getattr(screen, "analytical", False) and not hasattr(screen, "evaluate_with"):
        raise BadInput("fidelity.screen", f"{fid.screen!r} is not an analytical evaluator "
                       "with a stack profile (e.g. serving-sim, training-sim)")
    if fid.recalibrate and not hasattr(screen, "evaluate_with"):
        raise BadInput("fidelity.recalibrate", f"{fid.screen!r} has no profile to "
                       "recalibrate; set recalibrate = false")
    pool = candidates(setup.space, fid.pool, spec.seed or 0)
    if not pool:
        raise BadInput("space", "no valid config to screen")
    profile = None
    if hasattr(screen, "stack_profile"):
        profile = screen.stack_profile(pool[0])
    metrics = list(dict.fromkeys([o.metric for o in spec.objectives]
                                 + [m for m in ERROR_METRICS if m in screen.metrics]))
    measured: dict[Any, tuple[dict[str, Any], dict[str, float]]] = {}
    predicted: dict[Any, dict[str, float]] = {}  # every config sent to be measured
    sent: list[dict[str, Any]] = []  # their knobs
    rounds: list[Round] = []
    summary = None
    done = 0
    for r in range(1, fid.rounds + 1):
        preds = []
        for cfg in pool:
            res = screen.evaluate_with(cfg, profile) if profile is not None \
                else screen.evaluate(cfg)
            if res.status.value == "ok":
                preds.append((cfg, dict(res.metrics)))
        by_key = {params_key(setup.space.param_values(c)): m for c, m in preds}
        knobs = setup.space.param_values
        ranked = [c for c in rank(preds, spec.objectives, spec.constraints)
                  if params_key(knobs(c)) not in predicted]
        todo = ranked[:fid.top_k]
        if fid.explore:
            rest = [knobs(c) for c in ranked[fid.top_k:]]
            taken = sent + [knobs(c) for c in todo]
            todo += [ranked[fid.top_k + i] for i in spread(rest, taken, fid.explore)]
        if not todo:
            log(f"round {r}: every config the screen ranks was measured; stopping")
            break
        rnd = Round(r, constants={k: v for k, v in (profile.constants.items() if profile
                                                     else ()) if isinstance(v, (int, float))})
        picked = [knobs(c) for c in todo]
        sent += picked
        keys = [params_key(p) for p in picked]
        explored = set(keys[fid.top_k:])
        for k in keys:
            predicted[k] = by_key[k]

        def annotate(config: Mapping[str, Any], _r: int = r) -> dict[str, Any]:
            key = params_key(setup.space.param_values(config))
            return {"metrics": {f"predicted_{m}": v for m, v in predicted.get(key, {}).items()},
                    "fidelity_round": _r}

        runner = Runner(spec, storage, trials=done + len(todo), setup=setup, progress=progress,
                        enqueue=[setup.space.param_values(c) for c in todo], annotate=annotate)
        summary = runner.run()
        done = summary.trials_total
        for t in summary.results.trials if summary.results else []:
            key = params_key(t.params)
            if key in keys and t.user_attrs.get("status") == "ok":
                measured[key] = (dict(t.user_attrs["config"]),
                                 {k: v for k, v in t.user_attrs["metrics"].items()
                                  if not k.startswith("predicted_")})
                rnd.measured.append(t.number)
                if key in explored:
                    rnd.spread.append(t.number)
        rnd.error = median_errors([(predicted[k], measured[k][1]) for k in keys
                                   if k in measured], metrics)
        rounds.append(rnd)
        log(rnd.line())
        runner.record_study_attr("tuner.fidelity", [vars(x) for x in rounds])
        if summary.interrupted:
            break
        # a fit needs rows to agree on: below three it follows noise
        if fid.recalibrate and len(measured) >= 3 and r < fid.rounds:
            rows = [Row(c, {k: v for k, v in m.items() if v > 0}, f"measured {i}")
                    for i, (c, m) in enumerate(measured.values())]
            profile = fit_profile(screen, rows, profile)
            log("  recalibrated: " + ", ".join(f"{k} = {v:.4g}" for k, v in
                                               profile.constants.items()
                                               if k in profile.fit_bounds))
    if fid.profile_out and profile is not None and fid.recalibrate and len(measured) >= 3:
        from tuner.evaluators._calibration import calibrate, write_profile

        rows = [Row(c, {k: v for k, v in m.items() if v > 0}, f"measured {i}")
                for i, (c, m) in enumerate(measured.values())]
        report = calibrate(screen, rows)
        write_profile(report, fid.profile_out, f"study {spec.name}")
        log(f"wrote {fid.profile_out}: " + "; ".join(report.lines()[1:]))
    return summary, rounds


__all__ = ["ERROR_METRICS", "Round", "candidates", "median_errors", "rank", "run_ladder",
           "spread"]

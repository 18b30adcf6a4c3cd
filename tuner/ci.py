"""``tuner ci``: the scheduled tuning job that catches regressions of the system under test.

One run: re-evaluate the baseline's best config on the current evaluator (drift is measured,
not guessed; the result bypasses the cache), run a budgeted study warm-started from the
previous front, compare, and write a report (``summary.md``, ``report.json``, ``plot.png``).
The baseline file changes only with ``--update-baseline``.

Verdict (``--max-regression PCT``, default 5): the job fails when the best feasible value of
the first objective is more than PCT % worse than the baseline's, when the baseline's best
config got more than PCT % worse on any objective, or when it is no longer feasible.

Exit codes: 0 no regression, 3 regression, 2 bad input, 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import optuna

from tuner._errors import BadInput
from tuner._evaluator import EvalResult, Status, config_key
from tuner._pool import EvalPool
from tuner._results import StudyResults
from tuner._space import Categorical, Float, Int
from tuner.runner import Runner, default_memory_limit_mib
from tuner.spec import StudySpec, load_spec
from tuner.storage import load_study, redact, redact_secrets

EXIT_OK, EXIT_REGRESSION = 0, 3
BASELINE_SCHEMA = "tuner-ci-baseline/1"
REPORT_SCHEMA = "tuner-ci-report/1"
DEFAULT_WARM_START = 8


# -- inputs ---------------------------------------------------------------------------------
def parse_budget(text: str) -> tuple[int | None, float | None]:
    """``200`` -> 200 trials; ``90s`` / ``30m`` / ``2h`` -> wall time in seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not m:
        raise BadInput("--budget", f"{text!r} is not a trial count (200) or a duration "
                       "(90s, 30m, 2h)")
    number, unit = float(m.group(1)), m.group(2)
    if number <= 0:
        raise BadInput("--budget", f"{text!r} must be > 0")
    if not unit:
        if number != int(number):
            raise BadInput("--budget", f"{text!r}: a trial count is a whole number")
        return int(number), None
    return None, number * {"s": 1, "m": 60, "h": 3600}[unit]


def _point(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    ua = t.user_attrs
    return {"trial": t.number, "params": dict(t.params),
            "config": ua.get("config", dict(t.params)), "metrics": ua.get("metrics", {}),
            "values": list(t.values) if t.values else None}


def load_baseline(path: Path) -> dict[str, Any]:
    """A baseline (or a previous report.json), checked enough to compare against."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BadInput("--baseline", f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadInput("--baseline", f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})"
                       ) from None
    if not isinstance(data, dict):
        raise BadInput("--baseline", f"{path}: must be a JSON object")
    for key in ("objectives", "best"):
        if key not in data:
            raise BadInput("--baseline", f"{path}: missing key {key!r} (write one with "
                           "tuner ci ... --update-baseline)")
    objs = data["objectives"]
    if not isinstance(objs, list) or not objs or not all(
            isinstance(o, dict) and isinstance(o.get("metric"), str)
            and o.get("direction") in ("maximize", "minimize") for o in objs):
        raise BadInput("--baseline", f"{path}: 'objectives' must be a list of "
                       "{{metric, direction: maximize|minimize}}")
    best = data["best"]
    if not isinstance(best, dict) or not isinstance(best.get("params"), dict) or not \
            isinstance(best.get("values"), list) or len(best["values"]) != len(objs) or not \
            all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in best["values"]):
        raise BadInput("--baseline", f"{path}: 'best' must hold 'params' and one finite "
                       "number per objective in 'values'")
    for key in ("pareto", "top"):
        if not isinstance(data.get(key, []), list):
            raise BadInput("--baseline", f"{path}: {key!r} must be a list")
    return data


def valid_params(space: Any, params: dict[str, Any]) -> bool:
    """True when ``params`` are values the current space can take and pass its constraints."""
    if not isinstance(params, dict) or set(params) - set(space.params):
        return False
    for name, value in params.items():
        p = space.params[name]
        if isinstance(p, Categorical):
            if value not in p.choices:
                return False
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        elif not p.low <= value <= p.high:
            return False
        elif isinstance(p, Int) and (value != int(value) or (value - p.low) % p.step):
            return False
        elif isinstance(p, Float) and p.step and abs(
                (value - p.low) / p.step - round((value - p.low) / p.step)) > 1e-6:
            return False
    try:
        return not space.constraints(space.config(params))
    except Exception:  # e.g. a parameter this config lacks: not a usable warm start
        return False


# -- comparison ----------------------------------------------------------------------------
def better_pct(new: float, old: float, direction: str) -> float:
    """Change from ``old`` to ``new`` in percent of ``|old|``; positive means better."""
    diff = (new - old) if direction == "maximize" else (old - new)
    if old == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return 100.0 * diff / abs(old)


@dataclass
class Verdict:
    passed: bool
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def judge(objectives: Sequence[dict[str, Any]], baseline: dict[str, Any] | None,
          best: dict[str, Any] | None, recheck: dict[str, Any] | None,
          max_regression: float) -> tuple[Verdict, dict[str, Any]]:
    """The verdict and the numbers behind it (change of the best, drift of the baseline)."""
    v = Verdict(True)
    numbers: dict[str, Any] = {"change_pct": {}, "drift_pct": {}}
    if best is None:
        v.failures.append("no feasible trial in this run")
    if baseline is None:
        v.notes.append("no baseline yet: nothing to compare")
        v.passed = not v.failures
        return v, numbers
    old = baseline["best"]["values"]
    if best is not None:
        for i, o in enumerate(objectives):
            numbers["change_pct"][o["metric"]] = better_pct(best["values"][i], old[i],
                                                             o["direction"])
        first = objectives[0]
        pct = numbers["change_pct"][first["metric"]]
        if pct < -max_regression:
            v.failures.append(f"best {first['metric']} {best['values'][0]:.6g} is "
                              f"{-pct:.1f}% worse than the baseline's {old[0]:.6g} "
                              f"(allowed {max_regression:g}%)")
    if recheck is not None:
        if recheck["status"] != "ok" or not recheck.get("feasible", True):
            v.failures.append(f"the baseline's best config is now {recheck['status']}"
                              + (f": {recheck['reason']}" if recheck.get("reason") else ""))
        else:
            for i, o in enumerate(objectives):
                now = recheck["metrics"].get(o["metric"])
                if now is None:
                    continue
                pct = better_pct(now, old[i], o["direction"])
                numbers["drift_pct"][o["metric"]] = pct
                if pct < -max_regression:
                    v.failures.append(f"the baseline's best config regressed on {o['metric']}:"
                                      f" {old[i]:.6g} -> {now:.6g} ({-pct:.1f}% worse, allowed "
                                      f"{max_regression:g}%)")
    v.passed = not v.failures
    return v, numbers


# -- the job --------------------------------------------------------------------------------
class _WarmStartRunner(Runner):
    """A runner whose fresh study first evaluates the given parameter sets."""

    def __init__(self, *args: Any, warm_start: Sequence[dict[str, Any]] = (),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warm_start = list(warm_start)

    def _open_studies(self) -> tuple[optuna.Study, int, list[Any]]:
        mem, sid, previous = super()._open_studies()
        if not previous:
            for params in self.warm_start:
                mem.enqueue_trial(params, skip_if_exists=True)
        return mem, sid, previous


def _recheck(spec: StudySpec, runner: Runner, params: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the baseline's best parameters now, in a worker process (timeout, memory)."""
    config = runner.space.config(params)
    reasons = runner.space.constraints(config)
    if reasons:
        result, secs = EvalResult.infeasible("; ".join(reasons)), 0.0
    else:
        pool = EvalPool(runner.evaluator_name, spec.evaluator.options, 1,
                        spec.budget.trial_timeout_s,
                        spec.budget.memory_limit_mib or default_memory_limit_mib(1))
        try:
            pool.submit("baseline", config)
            while True:
                done = pool.poll(0.1)
                if done:
                    _, result, secs = done[0]
                    break
        finally:
            pool.close()
    feasible = result.status == Status.OK and all(
        c.violation(dict(result.metrics)) <= 0 for c in spec.constraints)
    if result.status != Status.FAILED:  # the study then reuses this measurement
        runner.cache.put(config_key(config, runner.fingerprint), result)
    return {"params": params, "config": config, "status": result.status.value,
            "feasible": feasible, "reason": result.reason, "metrics": dict(result.metrics),
            "eval_s": round(secs, 6)}


def _warm_start_points(source: dict[str, Any] | None, space: Any, k: int
                       ) -> list[dict[str, Any]]:
    if not source or k <= 0:
        return []
    points = ([source.get("best")] + list(source.get("pareto") or [])
              + list(source.get("top") or []))
    out: list[dict[str, Any]] = []
    for p in points:
        params = p.get("params") if isinstance(p, dict) else None
        if params and params not in out and valid_params(space, params):
            out.append(params)
        if len(out) >= k:
            break
    return out


def _best_front_top(res: StudyResults, top: int = 20
                    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """The best trial on the first objective, the Pareto front, and the ``top`` best distinct
    feasible configs on the first objective (the next run's warm start)."""
    front = res.pareto()
    if not front:
        return None, [], []
    sign = 1.0 if res.directions[0] == "maximize" else -1.0
    best = max(front, key=lambda t: sign * t.values[0])
    ranked, seen = [], set()
    for t in sorted(res.feasible(), key=lambda t: -sign * t.values[0]):
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            ranked.append(_point(t))
        if len(ranked) >= top:
            break
    return _point(best), [_point(t) for t in front], ranked


def run_job(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    spec = load_spec(args.study)
    trials, wall = spec.budget.trials, spec.budget.wall_time_s
    if args.budget:
        trials, wall = parse_budget(args.budget)
    trials = args.trials or trials
    wall = args.timeout or wall
    if args.max_regression < 0 or not math.isfinite(args.max_regression):
        raise BadInput("--max-regression", f"{args.max_regression} must be a percentage >= 0")
    baseline_path = Path(args.baseline)
    baseline = load_baseline(baseline_path) if baseline_path.exists() else None
    if baseline is None and not args.update_baseline:
        raise BadInput("--baseline", f"{baseline_path} does not exist; record one with "
                       "--update-baseline")
    warm_source = baseline
    if args.warm_start:
        wpath = Path(args.warm_start)
        if wpath.exists():
            warm_source = load_baseline(wpath)
        else:
            print(f"warm start: {wpath} not found, starting from the baseline",
                  file=sys.stderr)
    report_dir = Path(args.report)
    report_dir.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{report_dir.resolve() / 'tuner-ci.db'}"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_name = f"{spec.name}.ci-{stamp}"[:128]
    run_spec = spec.model_copy(deep=True, update={"name": run_name})

    runner_kwargs = dict(trials=trials, wall_time_s=wall, workers=args.workers,
                         sampler=args.sampler, progress=not args.quiet and sys.stderr.isatty())
    probe = Runner(run_spec, storage, **runner_kwargs)  # builds space/evaluator; checks input
    objectives = [o.model_dump() for o in spec.objectives]
    if baseline is not None:
        metrics = [o["metric"] for o in baseline["objectives"]]
        if metrics != [o["metric"] for o in objectives] or \
                [o["direction"] for o in baseline["objectives"]] != spec.directions:
            raise BadInput("--baseline", f"baseline objectives {baseline['objectives']} "
                           f"differ from the study's {objectives}; record a new baseline")
    warm = _warm_start_points(warm_source, probe.space, args.warm_start_top)
    t0 = time.monotonic()
    recheck = None
    if baseline is not None:
        params = baseline["best"]["params"]
        if valid_params(probe.space, params):
            recheck = _recheck(spec, probe, params)
        else:
            recheck = {"params": params, "status": "infeasible", "feasible": False,
                       "reason": "not a valid config of the current search space",
                       "metrics": {}}
    probe.rdb.engine.dispose()
    runner = _WarmStartRunner(run_spec, storage, warm_start=warm, **runner_kwargs)
    summary = runner.run()
    res = StudyResults.from_study(load_study(run_name, storage))
    best, front, top = _best_front_top(res)
    verdict, numbers = judge(objectives, baseline, best, recheck, args.max_regression)
    if summary.interrupted:
        verdict.passed = False
        verdict.failures.append("interrupted before the budget was spent")
    report = {
        "schema": REPORT_SCHEMA, "passed": verdict.passed, "failures": verdict.failures,
        "notes": verdict.notes, "study": spec.name, "run": run_name,
        "storage": redact(storage), "created": datetime.now(timezone.utc).isoformat(),
        "domain": spec.space.domain, "evaluator": runner.evaluator_name,
        "fingerprint": runner.fingerprint, "sampler": runner.sampler_name,
        "objectives": objectives, "constraints": [c.model_dump() for c in spec.constraints],
        "budget": {"trials": trials, "wall_time_s": wall}, "warm_start": warm,
        "trials": res.counts(), "trials_total": len(res.trials),
        "elapsed_s": round(time.monotonic() - t0, 3), "stop_reason": summary.stop_reason,
        "max_regression_pct": args.max_regression, "best": best, "pareto": front,
        "top": top,
        "hypervolume": res.hypervolume() if len(objectives) > 1 else None,
        "baseline": None if baseline is None else {
            "file": str(baseline_path), "run": baseline.get("run"),
            "created": baseline.get("created"), "fingerprint": baseline.get("fingerprint"),
            "best": baseline["best"], "recheck": recheck},
        **numbers, "baseline_updated": False, "spec": redact_secrets(
            spec.model_dump(mode="json", exclude={"storage"})),
    }
    if baseline is not None and baseline.get("fingerprint") not in (None, runner.fingerprint):
        verdict.notes.append(f"evaluator fingerprint changed: {baseline.get('fingerprint')} "
                             f"-> {runner.fingerprint} (evaluator, options or environment)")
        report["notes"] = verdict.notes
    if args.update_baseline and best is not None:
        new = {"schema": BASELINE_SCHEMA, **{k: report[k] for k in (
            "study", "run", "created", "domain", "evaluator", "fingerprint", "objectives",
            "constraints", "best", "pareto", "top")}}
        baseline_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = baseline_path.with_suffix(baseline_path.suffix + ".tmp")
        tmp.write_text(json.dumps(new, indent=1, default=str) + "\n", encoding="utf-8")
        tmp.replace(baseline_path)  # atomic: a killed job never leaves half a baseline
        report["baseline_updated"] = True
    from tuner._ci_report import write_report

    write_report(report, res, report_dir)
    return (EXIT_OK if verdict.passed else EXIT_REGRESSION), report


def build_parser() -> argparse.ArgumentParser:
    from tuner.cli import _Parser

    p = _Parser(prog="tuner ci", description="Scheduled tuning job: run a budgeted study, "
                "re-measure the baseline's best config, compare, report.")
    p.add_argument("study", help="study file (TOML)")
    p.add_argument("--baseline", required=True,
                   help="baseline JSON (written by --update-baseline)")
    p.add_argument("--budget", help="trials (200) or wall time (90s, 30m, 2h); default: the "
                                    "study file's budget")
    p.add_argument("--trials", type=int, help="trial budget (overrides --budget)")
    p.add_argument("--timeout", type=float, help="wall-time budget in seconds")
    p.add_argument("--max-regression", type=float, default=5.0, metavar="PCT",
                   help="fail when worse than the baseline by more than PCT %% (default 5)")
    p.add_argument("--update-baseline", action="store_true",
                   help="write this run's best and front to --baseline")
    p.add_argument("--warm-start", metavar="FILE",
                   help="start from this previous report.json or baseline (default: the "
                        "baseline)")
    p.add_argument("--warm-start-top", type=int, default=DEFAULT_WARM_START, metavar="K",
                   help=f"evaluate up to K previous front configs first (default "
                        f"{DEFAULT_WARM_START}; 0: none)")
    p.add_argument("--report", default="tuner-ci-report", metavar="DIR",
                   help="where to write summary.md, report.json, plot.png "
                        "(default tuner-ci-report)")
    p.add_argument("--storage", help="SQLAlchemy URL (default: DIR/tuner-ci.db, fresh "
                                     "measurements every run)")
    p.add_argument("--workers", type=int, help="parallel evaluation processes")
    p.add_argument("--sampler", help="sampler name (overrides the study file)")
    p.add_argument("--quiet", action="store_true")
    return p


def cli_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    for name in ("trials", "workers", "warm_start_top"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warm_start_top" else 1):
            raise BadInput(f"--{name.replace('_', '-')}", f"{value} must be > 0")
    if args.timeout is not None and not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise BadInput("--timeout", f"{args.timeout} must be > 0")
    code, report = run_job(args)
    status = "PASSED" if report["passed"] else "REGRESSION"
    print(f"tuner ci {report['study']}: {status}; report in {args.report}/summary.md"
          + ("; baseline updated" if report["baseline_updated"] else ""))
    for f in report["failures"]:
        print(f"  - {f}")
    return code


__all__ = ["EXIT_REGRESSION", "better_pct", "cli_main", "judge", "load_baseline",
           "parse_budget", "run_job", "valid_params"]

"""``tuner ci``: one scheduled run of the tuning job.

One run: re-evaluate the baseline's best config on the current evaluator (drift is measured,
not guessed; the result bypasses the cache), run a budgeted study warm-started from the
previous front, compare (``_verdict``), and write a report (``summary.md``, ``report.json``,
``plot.png``: ``_report``). The baseline file changes only with ``--update-baseline``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuner._command import EXIT_OK, EXIT_REGRESSION, check_positive
from tuner._errors import BadInput
from tuner.ci._baseline import (
    BASELINE_SCHEMA,
    DEFAULT_WARM_START,
    REPORT_SCHEMA,
    best_front_top,
    load_baseline,
    parse_budget,
    warm_start_points,
)
from tuner.ci._verdict import judge


def _recheck(runner: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the baseline's best parameters now, in a worker process (timeout, memory);
    the result goes to the cache, so the study reuses this measurement."""
    from tuner._evaluator import EvalResult, Status, config_key

    spec, space = runner.spec, runner.space
    config = space.config(params)
    reasons = space.constraints(config)
    if reasons:
        result, secs = EvalResult.infeasible("; ".join(reasons)), 0.0
    else:
        pool = runner.setup.pool(1)
        try:
            result, secs = pool.evaluate_one(config, "baseline", wait_s=0.1)
        finally:
            pool.close()
    feasible = result.status == Status.OK and all(
        c.violation(dict(result.metrics)) <= 0 for c in spec.constraints)
    if result.status != Status.FAILED:
        runner.cache.put(config_key(config, runner.fingerprint), result)
    return {"params": params, "config": config, "status": result.status.value,
            "feasible": feasible, "reason": result.reason, "metrics": dict(result.metrics),
            "eval_s": round(secs, 6)}


def run_job(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """One run of the job from parsed arguments: (exit code, report)."""
    from tuner._results import StudyResults
    from tuner._secrets import redact, redact_secrets
    from tuner._setup import StudySetup
    from tuner.runner import Runner
    from tuner.spec import load_spec
    from tuner.storage import load_study

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
    if baseline is not None and baseline.get("study") not in (None, spec.name):
        raise BadInput("--baseline", f"{baseline_path} was recorded for study "
                       f"{baseline['study']!r}, not {spec.name!r}; give that study's "
                       "baseline, or record one for this study with --update-baseline")
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
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_name = f"{spec.name}.ci-{stamp}"[:128]
    run_spec = spec.model_copy(deep=True, update={"name": run_name})

    setup = StudySetup.build(run_spec, args.sampler)  # space/evaluator; checks the input
    warm = warm_start_points(warm_source, setup.space, args.warm_start_top)
    runner = Runner(run_spec, storage, trials=trials, wall_time_s=wall, workers=args.workers,
                    progress=not args.quiet and sys.stderr.isatty(), warm_start=warm,
                    setup=setup)
    objectives = [o.model_dump() for o in run_spec.objectives]
    if baseline is not None:
        metrics = [o["metric"] for o in baseline["objectives"]]
        if metrics != [o["metric"] for o in objectives] or \
                [o["direction"] for o in baseline["objectives"]] != run_spec.directions:
            raise BadInput("--baseline", f"baseline objectives {baseline['objectives']} "
                           f"differ from the study's {objectives}; record a new baseline")
    t0 = time.monotonic()
    recheck = None
    if baseline is not None:
        params = baseline["best"]["params"]
        if setup.space.contains(params):
            recheck = _recheck(runner, params)
        else:
            recheck = {"params": params, "status": "infeasible", "feasible": False,
                       "reason": "not a valid config of the current search space",
                       "metrics": {}}
    summary = runner.run()
    res = StudyResults.from_study(load_study(run_name, storage))
    best, front, top = best_front_top(res)
    verdict, numbers = judge(objectives, baseline, best, recheck, args.max_regression)
    if summary.interrupted:
        verdict.passed = False
        verdict.failures.append("interrupted before the budget was spent")
    report = {
        "schema": REPORT_SCHEMA, "passed": verdict.passed, "failures": verdict.failures,
        "notes": verdict.notes, "study": spec.name, "run": run_name,
        "storage": redact(storage), "created": datetime.now(UTC).isoformat(),
        "domain": spec.space.domain, "evaluator": setup.evaluator_name,
        "fingerprint": setup.fingerprint, "sampler": setup.sampler_name,
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
    if baseline is not None and baseline.get("fingerprint") not in (None, setup.fingerprint):
        verdict.notes.append(f"evaluator fingerprint changed: {baseline.get('fingerprint')} "
                             f"-> {setup.fingerprint} (evaluator, options or environment)")
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
    from tuner.ci._report import write_report

    write_report(report, res, report_dir)
    return (EXIT_OK if verdict.passed else EXIT_REGRESSION), report


# -- the command ------------------------------------------------------------------------------
DESCRIPTION = ("Scheduled tuning job: run a budgeted study, re-measure the baseline's best "
               "config, compare, report.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``tuner ci STUDY.toml --baseline FILE [--budget 200|90s|30m] ...``"""
    p.description = p.description or DESCRIPTION
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


def run(args: argparse.Namespace) -> int:
    """Exit 0: no regression, 3: regression (2: bad input, 1: internal error)."""
    check_positive(args, "trials", "workers")
    if args.warm_start_top is not None and args.warm_start_top < 0:
        raise BadInput("--warm-start-top", f"{args.warm_start_top} must be >= 0")
    check_positive(args, "timeout")
    code, report = run_job(args)
    status = "PASSED" if report["passed"] else "REGRESSION"
    print(f"tuner ci {report['study']}: {status}; report in {args.report}/summary.md"
          + ("; baseline updated" if report["baseline_updated"] else ""))
    for f in report["failures"]:
        print(f"  - {f}")
    return code


__all__ = ["DESCRIPTION", "add_arguments", "run", "run_job"]

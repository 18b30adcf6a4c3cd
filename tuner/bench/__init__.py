"""``tuner bench``: samplers against exhaustive ground truth.

Every problem's finite space is scored once (``problems.build_table``); each sampler then runs
``budget`` trials per seed through an in-memory ask/tell loop that records trials exactly as
the runner does. Problems are the hand-written ones of ``problems.toml`` and/or generated ones
(``--generated dev``: random model x GPU x shape x objective, ``tuner.bench.generate``); the
two sets are reported apart. Outputs in ``out``: ``bench.json`` (every run and the
aggregates), ``bench.md`` (tables) and ``bench.png`` (convergence curves).

    run_bench(problems=None, samplers=None, seeds=5, budget=200, out="bench-results")
    main(["--problems", "kernel-gemm-4096", "--samplers", "tpe,cost-model", "--seeds", "3"])
    main(["--generated", "dev", "--samplers", "optuna-tpe,cost-model", "--budget", "100"])
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tuner._command import Parser, standalone
from tuner._errors import BadInput, TunerError, UnknownName
from tuner.bench.loop import Trace, curves, run_one
from tuner.bench.metrics import BUDGETS, run_scores, summarize
from tuner.bench.problems import (
    Problem,
    Table,
    available_problems,
    build_table,
    load_problems,
    select_problems,
)

#: compared by default; "llm" joins when an endpoint is configured (``TUNER_LLM_BASE_URL``)
DEFAULT_SAMPLERS = ("random", "grid", "tpe", "gp", "nsga2", "cmaes", "cost-model",
                    "cost-model-warm")
LLM_ENV = "TUNER_LLM_BASE_URL"
#: benchmark-only variants: the cost model warm-started as the problem's ``warm_start`` says
#: (problems without one skip it)
VARIANTS = {"cost-model-warm": "cost-model"}
#: Optuna's samplers exactly as Optuna configures them by default (only the seed given)
OPTUNA_DEFAULTS = {"optuna-tpe": "TPESampler", "optuna-gp": "GPSampler",
                   "optuna-nsga2": "NSGAIISampler"}
HAND_WRITTEN, REPLAY, GENERATED = "hand-written", "replay", "generated"


def _optuna_default(name: str, seed: int) -> Any:
    import optuna

    return getattr(optuna.samplers, OPTUNA_DEFAULTS[name])(seed=seed)


def default_samplers() -> list[str]:
    out = list(DEFAULT_SAMPLERS)
    if os.environ.get(LLM_ENV):
        out.append("llm")
    return out


def _llm_options() -> dict[str, Any]:
    opts: dict[str, Any] = {"base_url": os.environ[LLM_ENV]}
    if os.environ.get("TUNER_LLM_MODEL"):
        opts["model"] = os.environ["TUNER_LLM_MODEL"]
    return opts


def run_bench(problems: Sequence[str | Problem] | None = None,
              samplers: Sequence[str] | None = None, seeds: int = 5, budget: int = 200,
              out: str | Path | None = "bench-results",
              sampler_options: Mapping[str, Mapping[str, Any]] | None = None,
              use_cache: bool = True, log: Callable[[str], None] | None = None,
              command: str | None = None,
              generated: Sequence[int] | None = None) -> dict[str, Any]:
    """Run the benchmark; write ``bench.json``/``bench.md``/``bench.png`` under ``out``.

    Args:
        problems: names from ``problems.toml`` (or ``Problem`` objects); default: every
            problem whose domain is installed.
        samplers: registry names; default ``default_samplers()``.
        seeds: runs per (problem, sampler), seeds 0..seeds-1.
        budget: trials per run.
        out: output folder (None: write nothing).
        sampler_options: per-sampler factory options.
        use_cache: reuse scored tables from ``$TUNER_BENCH_CACHE`` (~/.cache/tuner/bench).
        log: progress callback (one line per problem x sampler).
        generated: generator seeds of generated problems (``tuner.bench.generate``); with
            ``problems`` None only these run.

    Returns:
        The result dict written to ``bench.json``.
    """
    from tuner.samplers import make_sampler

    if seeds < 1:
        raise BadInput("--seeds", f"{seeds} must be >= 1")
    if budget < 1:
        raise BadInput("--budget", f"{budget} must be >= 1")
    log = log or (lambda s: None)
    samplers = list(samplers or default_samplers())
    from tuner.registry import SAMPLERS

    for s in samplers:
        if s not in SAMPLERS and s not in VARIANTS and s not in OPTUNA_DEFAULTS and ":" not in s:
            raise UnknownName("--samplers", s, list(SAMPLERS) + list(VARIANTS)
                              + list(OPTUNA_DEFAULTS))
    options = {k: dict(v) for k, v in (sampler_options or {}).items()}
    if "llm" in samplers and "llm" not in options:
        if not os.environ.get(LLM_ENV):
            raise BadInput("--samplers", f"llm needs an endpoint: set {LLM_ENV} (and "
                           "TUNER_LLM_MODEL, TUNER_LLM_API_KEY)")
        options["llm"] = _llm_options()
    notes: list[str] = []
    chosen: list[Problem] = []
    if problems is None and not generated:  # by default every hand-written problem
        avail = available_problems()
        all_problems = load_problems()
        for name, why in avail.items():
            if why:
                notes.append(f"Skipped problem {name}: {why}")
            else:
                chosen.append(all_problems[name])
    elif problems is not None:
        names = [p for p in problems if isinstance(p, str)]
        by_name = {p.name: p for p in select_problems(names)} if names else {}
        chosen = [by_name[p] if isinstance(p, str) else p for p in problems]
    if not chosen and not generated:
        raise BadInput("--problems", "no benchmark problem is available (no domain installed)")

    t_start = time.perf_counter()
    tables: list[Table] = []
    for p in chosen:
        t0 = time.perf_counter()
        tables.append(build_table(p, use_cache=use_cache))
        log(f"{p.name}: {tables[-1].n_grid} grid points, {tables[-1].n_feasible} feasible "
            f"({time.perf_counter() - t0:.1f} s)")
    sets = {t.problem.name: REPLAY if t.problem.kind == "replay" else HAND_WRITTEN
            for t in tables}
    for gseed in generated or ():
        from tuner.bench.generate import generate

        t0 = time.perf_counter()
        _, table = generate(gseed, use_cache=use_cache, log=log)
        tables.append(table)
        sets[table.problem.name] = GENERATED
        log(f"{table.problem.name}: {table.n_valid} valid, {table.n_feasible} feasible "
            f"({time.perf_counter() - t0:.1f} s) - {table.problem.description}")

    runs: list[dict[str, Any]] = []
    all_curves: dict[tuple[str, str], list[Any]] = {}
    for table in tables:
        p = table.problem
        for s in samplers:
            if s in VARIANTS and not p.warm_start:
                continue  # this problem defines no prior source
            t0 = time.perf_counter()
            opts = dict(options.get(s) or {})
            if s in VARIANTS:
                opts.update({k: v for k, v in p.warm_start.items() if k != "description"})
                if "prior_evaluator" in opts:
                    opts.setdefault("prior_metrics", p.metrics)
                if "screen" in opts:  # as [sampler] screen in a study file
                    screen = opts["screen"]
                    screen = {"evaluator": screen} if isinstance(screen, str) else dict(screen)
                    opts["screen"] = {**screen, "metrics": p.metrics}
            for seed in range(seeds):
                space = p.space()
                try:
                    if s in OPTUNA_DEFAULTS:
                        sampler = _optuna_default(s, seed)
                    else:
                        sampler = make_sampler(VARIANTS.get(s, s), space, p.directions, seed,
                                               opts)
                except TunerError as exc:
                    runs.append({"problem": p.name, "sampler": s, "seed": seed,
                                 "error": str(exc)})
                    break
                try:
                    trace = run_one(table, sampler, s, seed, budget)
                except Exception as exc:  # a sampler that breaks on a problem: noted, not fatal
                    runs.append({"problem": p.name, "sampler": s, "seed": seed,
                                 "error": f"{type(exc).__name__}: {exc}"[:300]})
                    break
                c = curves(table, trace, budget)
                all_curves.setdefault((p.name, s), []).append(next(iter(c.values())))
                runs.append(_run_record(trace, run_scores(c)))
            done = [r for r in runs if r["problem"] == p.name and r["sampler"] == s
                    and not r.get("error")]
            if done:
                evals = [r["evals_to_target"] for r in done]
                log(f"  {s:<11} evals to 1%: {evals}  ({time.perf_counter() - t0:.1f} s)")
            else:
                log(f"  {s:<11} not run: {runs[-1]['error']}")

    reference = "optuna-tpe" if "optuna-tpe" in samplers else "tpe"
    summary = summarize(runs, samplers, [t.problem.name for t in tables], budget,
                        reference=reference)
    by_set = {}
    for name in (HAND_WRITTEN, REPLAY, GENERATED):
        names = [t.problem.name for t in tables if sets[t.problem.name] == name]
        if names and len(set(sets.values())) > 1:
            by_set[name] = summarize([r for r in runs if r["problem"] in names], samplers,
                                     names, budget, reference=reference)
    result = {
        "meta": {"command": command or "run_bench(...)", "budget": budget, "seeds": seeds,
                 "samplers": samplers, "budgets": [b for b in BUDGETS if b <= budget],
                 "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                 "machine": f"{platform.machine()} {os.cpu_count()} cores, Python "
                            f"{platform.python_version()}",
                 "elapsed_s": time.perf_counter() - t_start, "notes": notes,
                 "generated_seeds": list(generated or [])},
        "problems": [{**_problem_record(t), "set": sets[t.problem.name]} for t in tables],
        "scores": runs,
        "summary": summary,
        "by_set": by_set,
    }
    if out is not None:
        from tuner.bench.report import markdown, plot, write_curves, write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(result, out / "bench.json")
        (out / "bench.md").write_text(markdown(result))
        plot(result, all_curves, out / "bench.png")
        write_curves(result, all_curves, out / "curves")
    return result


def _run_record(trace: Trace, scores: dict[str, Any]) -> dict[str, Any]:
    n = len(trace.status)
    return {"problem": trace.problem, "sampler": trace.sampler, "seed": trace.seed,
            "trials": n, "seconds": trace.seconds,
            "distinct_evaluations": sum(trace.new_eval),
            "infeasible_trials": sum(s == "infeasible" for s in trace.status),
            "failed_trials": sum(s == "failed" for s in trace.status),
            "stopped": trace.stopped, **scores, **({"extra": trace.extra} if trace.extra
                                                    else {})}


def _problem_record(t: Table) -> dict[str, Any]:
    p = t.problem
    return {"name": p.name, "domain": p.domain, "evaluator": p.evaluator, "kind": p.kind,
            "description": p.description, "objectives": [list(o) for o in p.objectives],
            "constraints": [str(c) for c in p.constraints], "n_objectives": len(p.objectives),
            "n_grid": t.n_grid, "n_valid": t.n_valid, "n_feasible": t.n_feasible,
            "within_1pct": t.within(0.01), "front_size": len(t.front),
            "optimum": None if len(p.objectives) > 1 else t.optimum,
            "table_seconds": t.seconds,
            "warm_start": p.warm_start.get("description", "yes") if p.warm_start else None}


def _split(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``tuner bench [--problems ...] [--samplers ...] [--seeds N] [--budget N] [--out DIR]``."""
    p.description = p.description or __doc__.split("\n")[0]
    p.add_argument("--problems", nargs="*", help="problem names (comma or space separated); "
                   "default: all available")
    p.add_argument("--samplers", nargs="*", help="sampler names; default: "
                   + ",".join(DEFAULT_SAMPLERS) + " (+llm when TUNER_LLM_BASE_URL is set)")
    p.add_argument("--generated", help="generated problems by generator seed: dev (0-14), "
                   "held-out (1000-1014), a range (0-4) or a list (3,5); with no --problems "
                   "only these run")
    p.add_argument("--seeds", type=int, default=5, help="seeds per problem and sampler")
    p.add_argument("--budget", type=int, default=200, help="trials per run")
    p.add_argument("--out", default="bench-results", help="output folder")
    p.add_argument("--no-cache", action="store_true", help="rescore the problem tables")
    p.add_argument("--list", action="store_true", help="list the problems and exit")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run ``tuner bench`` from parsed arguments (``args.argv``: the words after ``bench``,
    recorded in ``bench.json``)."""
    if args.list:
        problems = load_problems()
        for name, why in available_problems(problems).items():
            p = problems[name]
            print(f"{name:<28} {p.domain:<17} {'x'.join(m for m, _ in p.objectives):<32} "
                  + (why if why else p.description))
        return 0
    log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    words = getattr(args, "argv", None)
    cmd = "tuner bench " + " ".join(shlex.quote(a) for a in (words if words is not None
                                                              else sys.argv[2:]))
    gen = None
    if args.generated:
        from tuner.bench.generate import parse_seeds

        gen = parse_seeds(args.generated)
    result = run_bench(_split(args.problems), _split(args.samplers), args.seeds, args.budget,
                       args.out, use_cache=not args.no_cache, log=log, command=cmd,
                       generated=gen)
    for label, summary in [("all", result["summary"]), *result["by_set"].items()]:
        t = summary.get("targets") or {}
        if log and t:
            bound = "<= " if t.get("ratio_is_upper_bound") else ""
            log(f"{label}: cost-model vs {t['reference']}: median evals "
                f"{t['median_evals_candidate']} vs {t['median_evals_reference']} (ratio "
                f"{bound}{t['ratio']}), cost-model within 1% in {t['reached_candidate']:.0%} "
                f"of runs; results in {args.out}/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``tuner bench ARGS...`` on its own (same parser and error style as ``tuner bench``)."""
    return standalone("tuner bench", add_arguments, run, argv)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``parser`` (or a new one) with ``tuner bench``'s arguments."""
    p = parser or Parser(prog="tuner bench")
    add_arguments(p)
    return p


def run_from_args(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """``run`` with the words after ``bench`` given apart."""
    if argv is not None:
        args.argv = list(argv)
    return run(args)


#: what ``tuner bench ...`` calls with the arguments after ``bench``
cli_main = main

__all__ = ["DEFAULT_SAMPLERS", "OPTUNA_DEFAULTS", "add_arguments", "build_parser", "cli_main",
           "default_samplers", "main", "run", "run_bench", "run_from_args"]

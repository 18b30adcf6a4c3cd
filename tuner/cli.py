"""The ``tuner`` command line (the stable contract in DESIGN.md).

Every subcommand is a pair ``add_arguments(parser)`` / ``run(args) -> int``: the ones whose
code lives elsewhere (``tuner.worker``, ``tuner.bench``, ``tuner.ci``) expose that pair, the
small ones are defined here. ``build_parser`` wires them all; ``main`` runs one through
``tuner._command.execute``, so every command has the same error style (one line, exit 2 for
bad input) and the same exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuner._command import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    STORAGE_HELP,
    Parser,
    check_positive,
    execute,
)
from tuner._errors import BadInput, TunerError


def _console() -> Any:
    from rich.console import Console

    # piped output (CI logs, files) gets wide tables instead of rich's 80-column default
    return Console() if sys.stdout.isatty() else Console(width=200)


# -- run ------------------------------------------------------------------------------------
def _run_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("study", help="study file (TOML)")
    r.add_argument("--storage", help=STORAGE_HELP)
    r.add_argument("--trials", type=int, help="total trials for the study (overrides budget)")
    r.add_argument("--timeout", type=float, help="wall-time budget of this run in seconds")
    r.add_argument("--workers", type=int, help="parallel evaluation processes")
    r.add_argument("--sampler", help="sampler name (overrides the study file)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--progress", action="store_true", help="progress bar even without a TTY")


def cmd_run(args: argparse.Namespace) -> int:
    from tuner._setup import StudySetup
    from tuner.runner import Runner
    from tuner.spec import load_spec

    spec = load_spec(args.study)
    check_positive(args, "trials", "timeout", "workers")
    setup = StudySetup.build(spec, args.sampler)
    if setup.sampler_name == "exhaustive":  # analytical evaluator: every config, in-process
        return _sweep(args, setup)
    runner = Runner(spec, args.storage, trials=args.trials, wall_time_s=args.timeout,
                    workers=args.workers, sampler=args.sampler,
                    progress=not args.quiet and sys.stderr.isatty() or args.progress,
                    setup=setup)
    console = _console()
    console.print(f"study [bold]{spec.name}[/]  domain {spec.space.domain}  evaluator "
                  f"{runner.evaluator_name}  sampler {runner.sampler_name}  storage "
                  f"{runner.storage_label}", highlight=False)
    summary = runner.run()
    console.print(
        f"{summary.trials_this_run} trials this run ({summary.evaluated} evaluated, "
        f"{summary.cached} from cache, {summary.infeasible} infeasible, {summary.failed} failed)"
        f" in {summary.elapsed_s:.1f} s; {summary.trials_total} stored; {summary.stop_reason}",
        highlight=False)
    _print_pareto(summary.results, console)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


def _sweep(args: argparse.Namespace, setup: Any) -> int:
    from tuner._sweep import Sweep

    bar = not args.quiet and (sys.stderr.isatty() or args.progress)
    sweep = Sweep(setup, args.storage, workers=args.workers, wall_time_s=args.timeout,
                  progress="bar" if bar else (None if args.quiet else "lines"))
    console = _console()
    console.print(f"study [bold]{setup.spec.name}[/]  domain {setup.spec.space.domain}  "
                  f"evaluator {setup.evaluator_name}  sampler exhaustive (every valid config, "
                  f"in-process)" + ("; --trials does not apply" if args.trials else ""),
                  highlight=False)
    summary = sweep.run()
    console.print(summary.line() + f"; storage {summary.storage}", highlight=False)
    _print_pareto(summary.results, console)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


# -- evaluate --------------------------------------------------------------------------------
def _parse_config(text: str, where: str) -> dict[str, Any]:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(where, f"invalid JSON ({exc.msg} at line {exc.lineno} column "
                       f"{exc.colno})") from None
    if not isinstance(cfg, dict):
        raise BadInput(where, f"must be a JSON object, got {type(cfg).__name__}")
    return cfg


def _evaluate_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("evaluator")
    e.add_argument("--config", help="one config as a JSON object")
    e.add_argument("--configs-file", help="JSON lines, one config per line")
    e.add_argument("--options", help="evaluator options as a JSON object")
    e.add_argument("--json", action="store_true", help="one JSON object per config")
    e.add_argument("--artifacts", action="store_true", help="include artifacts in the JSON")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tuner.registry import make_evaluator

    if (args.config is None) == (args.configs_file is None):
        raise BadInput("--config", "give exactly one of --config JSON or --configs-file F.jsonl")
    if args.config is not None:
        configs = [("--config", _parse_config(args.config, "--config"))]
    else:
        path = Path(args.configs_file)
        if not path.is_file():
            raise BadInput("--configs-file", f"file not found: {path}")
        configs = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                where = f"{path.name} line {i}"
                configs.append((where, _parse_config(line, where)))
        if not configs:
            raise BadInput("--configs-file", f"{path} holds no configs")
    options = _parse_config(args.options, "--options") if args.options else {}
    evaluator = make_evaluator(args.evaluator, options)
    evaluator.setup()
    try:
        for where, cfg in configs:
            try:
                result = evaluator.evaluate(cfg)
            except BadInput as exc:
                raise BadInput(f"{where}: {exc.field}" if where != "--config" else exc.field,
                               str(exc).split(": ", 1)[-1]) from None
            out = result.to_json(artifacts=args.artifacts)
            if args.json or args.configs_file:
                print(json.dumps(out, default=str), flush=True)
            else:
                _print_result(out)
    finally:
        evaluator.teardown()
    return EXIT_OK


def _print_result(out: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"status: {out['status']}" + (f" — {out['reason']}"
                                                      if out.get("reason") else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in out["metrics"].items():
        table.add_row(k, f"{v:.6g}")
    _console().print(table)


# -- show / pareto / export ------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(v)


def _print_pareto(res: Any, console: Any, limit: int = 20) -> None:
    """The front (best trial for one objective) of a ``StudyResults`` as a table."""
    from rich.table import Table

    front = res.pareto()
    title = "Pareto front" if len(res.objectives) > 1 else "Best trial"
    if not front:
        console.print(f"{title}: no feasible trial yet")
        return
    if len(res.objectives) == 1:
        front = front[:1]
    params = list(dict.fromkeys(p for t in front for p in t.params))
    if len(front) > 1:  # columns that differ along the front; the rest in one line
        same = {p for p in params if len({repr(t.params.get(p)) for t in front}) == 1}
        common = ", ".join(f"{p}={_fmt(front[0].params[p])}" for p in params if p in same)
        params = [p for p in params if p not in same]
    table = Table(title=f"{title} ({len(front)} configs)" if len(res.objectives) > 1 else title)
    table.add_column("trial", justify="right")
    for o in res.objectives:
        arrow = "↑" if o["direction"] == "maximize" else "↓"
        table.add_column(f"{o['metric']} {arrow}", justify="right")
    for p in params:
        table.add_column(p)
    for t in front[:limit]:
        table.add_row(str(t.number), *[_fmt(v) for v in t.values],
                      *[_fmt(t.params.get(p, "-")) for p in params])
    console.print(table)
    if len(front) > 1 and common:
        console.print(f"same on the whole front: {common}", highlight=False)
    if len(front) > limit:
        console.print(f"... {len(front) - limit} more (tuner pareto {res.name})")
    if len(res.objectives) > 1:
        ref = res.reference()
        console.print(f"hypervolume {res.hypervolume():.6g} against reference point "
                      f"{[round(r, 6) for r in ref or []]}", highlight=False)


def _study_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("study_name")
    s.add_argument("--storage", help=STORAGE_HELP)


def _pareto_arguments(s: argparse.ArgumentParser) -> None:
    _study_arguments(s)
    s.add_argument("--format", choices=("table", "json"), default="table")


def _export_arguments(s: argparse.ArgumentParser) -> None:
    _study_arguments(s)
    s.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    s.add_argument("--output", "-o", help="file to write (default: stdout; parquet needs a file)")
    s.add_argument("--pareto-only", action="store_true")


def cmd_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    from tuner import storage as st
    from tuner._results import StudyResults

    study = st.load_study(args.study_name, args.storage)
    res = StudyResults.from_study(study)
    console = _console()
    a = res.attrs
    console.print(f"study [bold]{res.name}[/]  domain {a.get('tuner.domain', '?')}  evaluator "
                  f"{a.get('tuner.evaluator', '?')}  sampler {a.get('tuner.sampler', '?')}  "
                  f"state {a.get('tuner.state', '?')}", highlight=False)
    counts = res.counts()
    console.print("trials: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
                  + f" ({len(res.trials)} total)", highlight=False)
    objs = ", ".join(f"{o['metric']} ({o['direction']})" for o in res.objectives)
    console.print(f"objectives: {objs}", highlight=False)
    cons = a.get("tuner.constraints") or []
    if cons:
        console.print("constraints: " + ", ".join(f"{c['metric']} {c['op']} {c['value']:g}"
                                                  for c in cons), highlight=False)
    _print_pareto(res, console)
    recent = [t for t in res.trials if t.user_attrs.get("status") in ("failed", "infeasible")]
    if recent:
        table = Table(title="latest infeasible/failed trials")
        table.add_column("trial", justify="right")
        table.add_column("status")
        table.add_column("reason", overflow="fold")
        for t in recent[-5:]:
            table.add_row(str(t.number), t.user_attrs["status"], str(t.user_attrs.get("reason")))
        console.print(table)
    return EXIT_OK


def cmd_pareto(args: argparse.Namespace) -> int:
    from tuner import storage as st
    from tuner._results import StudyResults

    res = StudyResults.from_study(st.load_study(args.study_name, args.storage))
    if args.format == "json":
        print(json.dumps([res.row(t) for t in res.pareto()], default=str, indent=1))
    else:
        _print_pareto(res, _console(), limit=10**9)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from tuner import storage as st
    from tuner._export import export_rows
    from tuner._results import StudyResults

    res = StudyResults.from_study(st.load_study(args.study_name, args.storage))
    rows = [res.row(t) for t in (res.pareto() if args.pareto_only else res.trials)]
    out = export_rows(rows, args.format, args.output)
    if args.output:
        print(f"wrote {len(rows)} trials to {out}", file=sys.stderr)
    return EXIT_OK


# -- validate / catalog / dashboard ----------------------------------------------------------
def _validate_arguments(v: argparse.ArgumentParser) -> None:
    v.add_argument("domain", help="training | serving | kernels | quantization")
    v.add_argument("--json", help="also write the table as JSON to this file")
    v.add_argument("--check", action="store_true", help="exit 1 if the error targets are missed")


def cmd_validate(args: argparse.Namespace) -> int:
    from rich.table import Table

    from tuner.registry import VALIDATIONS, resolve

    report = resolve("domain", VALIDATIONS, args.domain)()
    console = _console()
    table = Table(title=f"{report.domain}: simulator vs reference")
    for col in ("case", "metric", "predicted", "reference", "error %"):
        table.add_column(col, justify="left" if col in ("case", "metric") else "right")
    for r in report.rows:
        table.add_row(r.case, r.metric, f"{r.predicted:.4g}", f"{r.reference:.4g}",
                      f"{r.error_pct:+.1f}")
    console.print(table)
    summary = Table(title="error summary (absolute %)")
    for col in ("metric", "rows", "mean", "max", "target mean", "target max"):
        summary.add_column(col, justify="left" if col == "metric" else "right")
    for m, s in report.summary().items():
        summary.add_row(m, str(s["n"]), f"{s['mean_abs_error_pct']:.1f}",
                        f"{s['max_abs_error_pct']:.1f}", _fmt(s["target_mean_pct"]),
                        _fmt(s["target_max_pct"]))
    console.print(summary)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "domain": report.domain, "summary": report.summary(),
            "rows": [dict(r.__dict__, error_pct=r.error_pct) for r in report.rows]}, indent=1))
    if args.check and not report.meets_targets():
        console.print("targets not met")
        return EXIT_INTERNAL
    return EXIT_OK


def _catalog_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("what", nargs="?",
                   choices=("spaces", "evaluators", "samplers", "hardware", "models"))


def cmd_catalog(args: argparse.Namespace) -> int:
    from rich.table import Table

    from evaluators import _catalog as cat
    from tuner import registry

    console = _console()
    what = args.what
    if what in (None, "spaces"):
        _simple_table(console, "spaces (study file: [space] domain)", registry.SPACES)
    if what in (None, "evaluators"):
        _simple_table(console, "evaluators", registry.EVALUATORS)
    if what in (None, "samplers"):
        _simple_table(console, "samplers", registry.SAMPLERS)
    if what in (None, "hardware"):
        t = Table(title="hardware")
        for c in ("name", "HBM GiB", "HBM TB/s", "bf16 TFLOP/s", "fp8 TFLOP/s", "SMs", "$/h"):
            t.add_column(c)
        for hw in (cat.get_hardware(n) for n in cat.hardware_names()):
            t.add_row(hw.name, f"{hw.hbm_gib:g}", f"{hw.hbm_tb_s:g}",
                      f"{hw.peak_tflops.get('bf16', 0):g}",
                      _fmt(hw.peak_tflops.get("fp8", "-")), str(hw.sm_count),
                      f"{hw.price_usd_per_hour:g}")
        console.print(t)
    if what in (None, "models"):
        t = Table(title="models")
        for c in ("name", "layers", "hidden", "heads/kv", "experts", "aliases"):
            t.add_column(c, overflow="fold")
        for m in (cat.get_model(n) for n in cat.model_names()):
            t.add_row(m.name, str(m.num_layers), str(m.hidden_size),
                      f"{m.num_heads}/{m.num_kv_heads}",
                      f"{m.num_experts} top-{m.top_k}" if m.is_moe else "-",
                      ", ".join(m.aliases))
        console.print(t)
    return EXIT_OK


def _simple_table(console: Any, title: str, table: dict[str, str]) -> None:
    from rich.table import Table

    t = Table(title=title)
    t.add_column("name")
    t.add_column("implementation")
    for k, v in table.items():
        t.add_row(k, v)
    console.print(t)


def _dashboard_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("--storage", help=STORAGE_HELP)
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost only)")


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from tuner.dashboard_launch import launch
    except ImportError:
        raise TunerError("the dashboard needs: pip install 'tuner[dashboard]'") from None
    from tuner.storage import storage_url

    return launch(storage_url(args.storage), port=args.port, host=args.host)


# -- parser ----------------------------------------------------------------------------------
Pair = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

#: name -> (help, its ``(add_arguments, run)`` pair, or the module that exposes them)
COMMANDS: dict[str, tuple[str, Pair | str]] = {
    "run": ("run (or resume) a study from a TOML file", (_run_arguments, cmd_run)),
    "worker": ("one more worker on a shared (PostgreSQL) study", "tuner.worker"),
    "evaluate": ("score configs with one evaluator, JSON out", (_evaluate_arguments,
                                                                 cmd_evaluate)),
    "show": ("summary of a stored study", (_study_arguments, cmd_show)),
    "pareto": ("the Pareto front of a study", (_pareto_arguments, cmd_pareto)),
    "export": ("all trials as CSV, JSON or Parquet", (_export_arguments, cmd_export)),
    "validate": ("simulator vs published/measured reference: errors",
                 (_validate_arguments, cmd_validate)),
    "catalog": ("list spaces, evaluators, samplers, hardware, models",
                (_catalog_arguments, cmd_catalog)),
    "bench": ("samplers vs exhaustive ground truth", "tuner.bench"),
    "ci": ("scheduled tuning job with a baseline", "tuner.ci"),
    "dashboard": ("open the Streamlit dashboard on localhost",
                  (_dashboard_arguments, cmd_dashboard)),
}


def _pair(name: str, impl: Pair | str) -> Pair:
    if not isinstance(impl, str):
        return impl
    try:
        module = importlib.import_module(impl)
    except ImportError:  # a trimmed installation: say so when the command is used
        def anything(p: argparse.ArgumentParser) -> None:
            p.add_argument("rest", nargs=argparse.REMAINDER)

        def unavailable(args: argparse.Namespace) -> int:
            raise TunerError(f"tuner {name} is not available in this installation")

        return anything, unavailable
    return module.add_arguments, module.run


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``tuner`` parser; ``only``: wire just that subcommand's arguments (the others are
    listed by name, so ``main`` imports only the module of the command it runs)."""
    p = Parser(prog="tuner", description="Automated configuration search for ML systems.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (helptext, impl) in COMMANDS.items():
        s = sub.add_parser(name, help=helptext)
        if only is None or only == name:
            add_arguments, run = _pair(name, impl)
            add_arguments(s)
            s.set_defaults(func=run)
    return p


def _version() -> str:
    from tuner import __version__

    return f"tuner {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(only=argv[0] if argv else "").parse_args(argv)
    args.argv = argv[1:]  # the words after the command (``tuner bench`` records them)
    return execute(args.func, args)


__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_OK", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())

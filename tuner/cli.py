"""The ``tuner`` command line (the stable contract in DESIGN.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from tuner._errors import BadInput, TunerError

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own code too)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _console() -> Any:
    from rich.console import Console

    # piped output (CI logs, files) gets wide tables instead of rich's 80-column default
    return Console() if sys.stdout.isatty() else Console(width=200)


# -- run / worker ----------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from tuner.runner import Runner
    from tuner.spec import load_spec

    spec = load_spec(args.study)
    if args.trials is not None and args.trials <= 0:
        raise BadInput("--trials", f"{args.trials} must be > 0")
    if args.timeout is not None and args.timeout <= 0:
        raise BadInput("--timeout", f"{args.timeout} must be > 0")
    if args.workers is not None and args.workers <= 0:
        raise BadInput("--workers", f"{args.workers} must be > 0")
    runner = Runner(spec, args.storage, trials=args.trials, wall_time_s=args.timeout,
                    workers=args.workers, sampler=args.sampler,
                    progress=not args.quiet and sys.stderr.isatty() or args.progress)
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
    from tuner import storage as st

    _print_pareto(st.load_study(spec.name, args.storage or spec.storage), console)
    return 130 if summary.interrupted else EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    try:
        from tuner.worker import run_worker
    except ImportError:
        raise TunerError("tuner worker is not available in this installation") from None
    return run_worker(args)


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


def _print_pareto(study: Any, console: Any, limit: int = 20) -> None:
    from rich.table import Table

    from tuner._results import StudyResults

    res = StudyResults.from_study(study)
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
    _print_pareto(study, console)
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

    study = st.load_study(args.study_name, args.storage)
    if args.format == "json":
        from tuner._results import StudyResults

        res = StudyResults.from_study(study)
        print(json.dumps([res.row(t) for t in res.pareto()], default=str, indent=1))
    else:
        _print_pareto(study, _console(), limit=10**9)
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


# -- validate / catalog / bench / ci / dashboard ---------------------------------------------
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


def cmd_bench(args: argparse.Namespace) -> int:
    from tuner.bench import main as bench_main

    return bench_main(args.rest)


def cmd_ci(args: argparse.Namespace) -> int:
    try:
        from tuner.ci import cli_main
    except ImportError:
        raise TunerError("tuner ci is not available in this installation") from None
    return cli_main(args.rest)


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from tuner.dashboard_launch import launch
    except ImportError:
        raise TunerError("the dashboard needs: pip install 'tuner[dashboard]'") from None
    from tuner.storage import storage_url

    return launch(storage_url(args.storage), port=args.port, host=args.host)


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tuner", description="Automated configuration search for ML systems.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    storage_help = "SQLAlchemy URL (default: $TUNER_STORAGE or sqlite:///~/.tuner/tuner.db)"

    r = sub.add_parser("run", help="run (or resume) a study from a TOML file")
    r.add_argument("study", help="study file (TOML)")
    r.add_argument("--storage", help=storage_help)
    r.add_argument("--trials", type=int, help="total trials for the study (overrides budget)")
    r.add_argument("--timeout", type=float, help="wall-time budget of this run in seconds")
    r.add_argument("--workers", type=int, help="parallel evaluation processes")
    r.add_argument("--sampler", help="sampler name (overrides the study file)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--progress", action="store_true", help="progress bar even without a TTY")
    r.set_defaults(func=cmd_run)

    w = sub.add_parser("worker", help="one more worker on a shared (PostgreSQL) study")
    w.add_argument("study")
    w.add_argument("--storage", required=True, help=storage_help)
    w.add_argument("--trials", type=int, help="total trials for the study")
    w.add_argument("--timeout", type=float, help="wall-time budget of this worker in seconds")
    w.add_argument("--sampler")
    w.add_argument("--heartbeat", type=int, default=10, help="heartbeat interval in seconds")
    w.add_argument("--quiet", action="store_true")
    w.set_defaults(func=cmd_worker)

    e = sub.add_parser("evaluate", help="score configs with one evaluator, JSON out")
    e.add_argument("evaluator")
    e.add_argument("--config", help="one config as a JSON object")
    e.add_argument("--configs-file", help="JSON lines, one config per line")
    e.add_argument("--options", help="evaluator options as a JSON object")
    e.add_argument("--json", action="store_true", help="one JSON object per config")
    e.add_argument("--artifacts", action="store_true", help="include artifacts in the JSON")
    e.set_defaults(func=cmd_evaluate)

    for name, func, helptext in (("show", cmd_show, "summary of a stored study"),
                                 ("pareto", cmd_pareto, "the Pareto front of a study"),
                                 ("export", cmd_export, "all trials as CSV, JSON or Parquet")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("study_name")
        s.add_argument("--storage", help=storage_help)
        if name == "export":
            s.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
            s.add_argument("--output", "-o", help="file to write (default: stdout; "
                                                  "parquet needs a file)")
            s.add_argument("--pareto-only", action="store_true")
        elif name == "pareto":
            s.add_argument("--format", choices=("table", "json"), default="table")
        s.set_defaults(func=func)

    v = sub.add_parser("validate", help="simulator vs published/measured reference: errors")
    v.add_argument("domain", help="training | serving | kernels | quantization")
    v.add_argument("--json", help="also write the table as JSON to this file")
    v.add_argument("--check", action="store_true", help="exit 1 if the error targets are missed")
    v.set_defaults(func=cmd_validate)

    c = sub.add_parser("catalog", help="list spaces, evaluators, samplers, hardware, models")
    c.add_argument("what", nargs="?",
                   choices=("spaces", "evaluators", "samplers", "hardware", "models"))
    c.set_defaults(func=cmd_catalog)

    b = sub.add_parser("bench", help="samplers vs exhaustive ground truth (tuner bench --help)",
                       add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)

    ci = sub.add_parser("ci", help="scheduled tuning job with a baseline (tuner ci --help)",
                        add_help=False)
    ci.add_argument("rest", nargs=argparse.REMAINDER)
    ci.set_defaults(func=cmd_ci)

    d = sub.add_parser("dashboard", help="open the Streamlit dashboard on localhost")
    d.add_argument("--storage", help=storage_help)
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost only)")
    d.set_defaults(func=cmd_dashboard)
    return p


def _version() -> str:
    from tuner import __version__

    return f"tuner {__version__}"


def _one_line(exc: BaseException) -> str:
    """The message as one printable line: input values may carry newlines or escape codes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] in ("bench", "ci"):
        # these parse their own options; argparse's REMAINDER cannot start with an option
        args = argparse.Namespace(func=cmd_bench if argv[0] == "bench" else cmd_ci,
                                  rest=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BadInput as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TunerError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # keep tracebacks for debugging, one line for users
        if os.environ.get("TUNER_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {_one_line(exc)} (set TUNER_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

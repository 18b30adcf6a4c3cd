"""The ``tuner`` command line (the stable contract: the README's command list).

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
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    one_line,
)
from tuner._errors import BadInput, MissingExtra, TunerError
from tuner._record import OUTCOME_LABELS
from tuner._tables import fmt, print_front, print_result
from tuner.spec import MAX_DEPTH, MAX_INPUT_BYTES, MAX_WORKERS, check_depth


def _console() -> Any:
    from rich.console import Console

    # a terminal: its width; piped output (CI logs, files): 80 columns, which every table fits
    return Console() if sys.stdout.isatty() else Console(width=80)


# -- run ------------------------------------------------------------------------------------
def _run_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("study", help="study file (TOML)")
    r.add_argument("--storage", help=STORAGE_HELP)
    r.add_argument("--trials", type=int, help="total trials for the study (overrides budget)")
    r.add_argument("--timeout", type=float, help="wall-time budget of this run in seconds")
    r.add_argument("--workers", type=int,
                   help=f"parallel evaluation processes (1-{MAX_WORKERS})")
    r.add_argument("--sampler", help="sampler name (overrides the study file)")
    r.add_argument("--start-over", action="store_true",
                   help="delete a stored study of the same name first (its trials are lost; "
                        "cached results are kept)")
    r.add_argument("--quiet", action="store_true", help="no progress")
    r.add_argument("--progress", action="store_true", help="progress bar even without a TTY")


def check_workers(args: argparse.Namespace) -> None:
    """``--workers`` within 1..MAX_WORKERS (each is a process with its own memory)."""
    check_positive(args, "workers")
    if getattr(args, "workers", None) is not None and args.workers > MAX_WORKERS:
        raise BadInput("--workers", f"{args.workers} is more than {MAX_WORKERS} evaluation "
                       "processes; use tuner worker on more machines for more")


def cmd_run(args: argparse.Namespace) -> int:
    from tuner._setup import StudySetup
    from tuner.runner import Runner
    from tuner.spec import load_spec

    spec = load_spec(args.study)
    check_positive(args, "trials", "timeout")
    check_workers(args)
    if spec.fidelity is not None:
        return _run_ladder(spec, args)
    setup = StudySetup.build(spec, args.sampler)
    if setup.sampler_name == "exhaustive":  # analytical evaluator: every config, in-process
        return _sweep(args, setup)
    progress = ("off" if args.quiet else "bar" if args.progress or sys.stderr.isatty()
                else "lines")
    runner = Runner(spec, args.storage, trials=args.trials, wall_time_s=args.timeout,
                    workers=args.workers, sampler=args.sampler, progress=progress,
                    start_over=args.start_over, setup=setup)
    console = _console()
    console.print(f"study [bold]{spec.name}[/]  domain {spec.space.domain}  evaluator "
                  f"{runner.evaluator_name}  sampler {runner.sampler_name}  storage "
                  f"{runner.storage_label}", highlight=False, soft_wrap=True)
    stopped = _late_signals_finish_quietly()
    summary = runner.run()
    stopped[0] = summary.interrupted
    console.print(
        f"{summary.trials_this_run} trials this run: {summary.evaluated} evaluated, "
        f"{summary.cached} from the cache, {summary.infeasible} infeasible, {summary.failed} "
        f"failed; {summary.elapsed_s:.1f} s; {summary.trials_total} stored; "
        f"{summary.stop_reason}", highlight=False, soft_wrap=True)
    print_front(summary.results, console)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


def _run_ladder(spec: Any, args: argparse.Namespace) -> int:
    from tuner._ladder import run_ladder

    if args.trials or args.sampler:
        raise BadInput("--trials" if args.trials else "--sampler", "a [fidelity] study is "
                       "budgeted by (fidelity.top_k + fidelity.explore) x fidelity.rounds and "
                       "picks its own configs")
    console = _console()
    fid = spec.fidelity
    console.print(f"study [bold]{spec.name}[/]  fidelity ladder: screen {fid.screen}, measure "
                  f"{spec.evaluator.name}, top {fid.top_k}"
                  f"{f' + {fid.explore} spread' if fid.explore else ''} x {fid.rounds} rounds"
                  f"{', recalibrating' if fid.recalibrate else ''}", highlight=False)
    progress = ("off" if args.quiet else "bar" if args.progress or sys.stderr.isatty()
                else "lines")
    summary, _ = run_ladder(spec, args.storage, progress=progress,
                            log=lambda m: console.print(m, highlight=False))
    if summary is not None:
        print_front(summary.results, console)
    return EXIT_INTERRUPTED if summary is not None and summary.interrupted else EXIT_OK


def _late_signals_finish_quietly() -> list[bool]:
    """Ctrl-C/SIGTERM outside the run's own handling: an interruption (exit 130) before the
    run has stopped, ignored once it has (its state is recorded; what is left is printing).
    Set the returned flag when the run stopped."""
    import signal

    stopped = [False]

    def late(signum: int, frame: Any) -> None:
        if not stopped[0]:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, late)
    return stopped


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
    print_front(summary.results, console)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


# -- evaluate --------------------------------------------------------------------------------
def _parse_config(text: str, where: str) -> dict[str, Any]:
    if len(text) > MAX_INPUT_BYTES:
        raise BadInput(where, f"{len(text):,} characters; a config is at most "
                       f"{MAX_INPUT_BYTES:,}")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(where, f"invalid JSON ({exc.msg} at line {exc.lineno} column "
                       f"{exc.colno})") from None
    except RecursionError:
        raise BadInput(where, f"nested more than {MAX_DEPTH} levels deep") from None
    if not isinstance(cfg, dict):
        raise BadInput(where, f"must be a JSON object, got {type(cfg).__name__}")
    check_depth(cfg, where)
    return cfg


def _evaluate_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("evaluator")
    e.add_argument("--config", help="one config as a JSON object")
    e.add_argument("--configs-file", help="JSON lines, one config per line")
    e.add_argument("--options", help="evaluator options as a JSON object")
    e.add_argument("--json", action="store_true", help="one JSON object per config")
    e.add_argument("--artifacts", action="store_true", help="include artifacts in the JSON")


def _config_lines(path: Path) -> Iterator[tuple[int, str | BadInput]]:
    """(line number, text or the ``BadInput`` of that line) of a JSON-lines file; blank lines
    are skipped. A line that is not UTF-8 or is too long is reported, not fatal."""
    with path.open("rb") as fh:
        for i, raw in enumerate(fh, 1):
            if len(raw) > MAX_INPUT_BYTES:
                yield i, BadInput(f"{path.name} line {i}", f"{len(raw):,} bytes; a config is "
                                  f"at most {MAX_INPUT_BYTES:,}")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield i, BadInput(f"{path.name} line {i}", "not UTF-8 text")
                continue
            if text.strip():
                yield i, text.rstrip("\r\n")


def _error_object(exc: BadInput, line: int) -> dict[str, Any]:
    """The output line of an input line that could not be evaluated (keeps output lines up
    with input lines): ``status`` failed, the reason, and ``error`` saying it was the input."""
    return {"status": "failed", "metrics": {}, "reason": one_line(exc), "error": "bad input",
            "line": line}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tuner.registry import make_evaluator

    if (args.config is None) == (args.configs_file is None):
        raise BadInput("--config", "give exactly one of --config JSON or --configs-file F.jsonl")
    lines: Iterable[tuple[int, str | BadInput]]
    if args.config is not None:
        configs = [_parse_config(args.config, "--config")]
        lines = []
    else:
        path = Path(args.configs_file)
        if not path.is_file():
            raise BadInput("--configs-file", f"file not found: {path}")
        with path.open("rb") as fh:
            head = fh.read(8192)
        if b"\0" in head:
            raise BadInput("--configs-file", f"{path} is a binary file, not JSON lines")
        configs, lines = [], _config_lines(path)
    options = _parse_config(args.options, "--options") if args.options else {}
    evaluator = make_evaluator(args.evaluator, options)
    type(evaluator).preflight(options)
    if configs:  # --config: a bad config is a bad command line
        evaluator.check_config(configs[0])
    evaluator.setup()
    bad: list[str] = []
    try:
        if configs:
            result = evaluator.evaluate(configs[0])
            out = result.to_json(artifacts=args.artifacts)
            if args.json:
                print(json.dumps(out, default=str), flush=True)
            else:
                print_result(out, _console())
            return EXIT_OK
        for i, text in lines:  # --configs-file: one output line per config line, in order
            where = f"{Path(args.configs_file).name} line {i}"
            try:
                if isinstance(text, BadInput):
                    raise text
                cfg = _parse_config(text, where)
                evaluator.check_config(cfg)
                out = evaluator.evaluate(cfg).to_json(artifacts=args.artifacts)
            except BadInput as exc:
                msg = one_line(exc)
                out = _error_object(BadInput("", msg if msg.startswith(where) else
                                             f"{where}: {msg}"), i)
                bad.append(out["reason"])
            print(json.dumps(out, default=str), flush=True)
    finally:
        evaluator.teardown()
    if bad:  # one line on stderr; each bad line's own output line says why
        more = f" (and {len(bad) - 1} more bad line(s))" if len(bad) > 1 else ""
        print(f"error: {bad[0]}{more}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


# -- show / pareto / export ------------------------------------------------------------------
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


def _state_line(res: Any, rdb: Any) -> str:
    """The recorded state, and whether a run is really at it (a ``running`` study whose
    runner holds no live lock was stopped without recording it: say so)."""
    from tuner._study_lock import live_holder

    state = res.attrs.get("tuner.state", "?")
    if state == "running" and res.attrs.get("tuner.mode") != "shared":
        if live_holder(rdb.engine, res.name) is None:
            state = "interrupted (recorded as running, but no run holds the study)"
    error = res.attrs.get("tuner.error")
    return f"{state}: {error}" if state == "failed" and error else state


def cmd_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    from tuner import storage as st
    from tuner._results import StudyResults

    study = st.load_study(args.study_name, args.storage)
    res = StudyResults.from_study(study)
    console = _console()
    a = res.attrs
    console.print(f"study [bold]{res.name}[/]  domain {a.get('tuner.domain', '?')}  evaluator "
                  f"{a.get('tuner.evaluator', '?')}  sampler {a.get('tuner.sampler', '?')}",
                  highlight=False, soft_wrap=True)
    rdb = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache layer
    console.print(f"state: {_state_line(res, rdb)}", highlight=False,
                  soft_wrap=True)
    counts = res.counts()
    console.print("trials: " + ", ".join(f"{v} {OUTCOME_LABELS.get(k, k)}"
                                         for k, v in counts.items() if v)
                  + f" ({len(res.trials)} total)", highlight=False)
    objs = ", ".join(f"{o['metric']} ({o['direction']})" for o in res.objectives)
    console.print(f"objectives: {objs}", highlight=False)
    cons = a.get("tuner.constraints") or []
    if cons:
        console.print("constraints: " + ", ".join(f"{c['metric']} {c['op']} {c['value']:g}"
                                                  for c in cons), highlight=False)
    print_front(res, console)
    recent = [t for t in res.trials if t.user_attrs.get("status") in ("failed", "infeasible")]
    if recent:
        table = Table(title="latest infeasible/failed trials")
        table.add_column("trial", justify="right", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("reason", overflow="fold", ratio=1)
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
        print_front(res, _console(), limit=10**9)
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

    if args.json is not None:
        if not args.json.strip():
            raise BadInput("--json", "empty: give the file to write the table to")
        out = Path(args.json).expanduser()
        if not out.parent.is_dir():
            raise BadInput("--json", f"{args.json}: its directory does not exist")
        if out.is_dir():
            raise BadInput("--json", f"{args.json} is a directory; give a file path")
    report = resolve("domain", VALIDATIONS, args.domain, plugins=False)()
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
    def target(v: float) -> str:  # informational metrics have none
        return "—" if math.isnan(v) else fmt(v)

    for m, s in report.summary().items():
        summary.add_row(m, str(s["n"]), f"{s['mean_abs_error_pct']:.1f}",
                        f"{s['max_abs_error_pct']:.1f}", target(s["target_mean_pct"]),
                        target(s["target_max_pct"]))
    console.print(summary)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    if args.json:
        def plain(v: Any) -> Any:  # JSON has no NaN: a metric without a target gets null
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, list):
                return [plain(x) for x in v]
            return None if isinstance(v, float) and not math.isfinite(v) else v

        out.write_text(json.dumps(plain({
            "domain": report.domain, "summary": report.summary(),
            "rows": [dict(r.__dict__, error_pct=r.error_pct) for r in report.rows]}),
            indent=1, allow_nan=False))
    if args.check and not report.meets_targets():
        console.print("targets not met")
        return EXIT_INTERNAL
    return EXIT_OK


def _dashboard_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("--storage", help=STORAGE_HELP)
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost only)")


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from tuner.dashboard_launch import launch
    except ImportError:
        raise MissingExtra("streamlit", "dashboard") from None
    from tuner.storage import storage_url

    return launch(storage_url(args.storage, create=False), port=args.port, host=args.host)


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
    "catalog": ("list spaces and their parameters, evaluators, metrics, samplers, software "
                "stacks, hardware, models, workloads", "tuner._catalog_cmd"),
    "init": ("write an example study file to start from", "tuner._examples"),
    "bench": ("samplers vs exhaustive ground truth", "tuner.bench"),
    "ci": ("scheduled tuning job with a baseline", "tuner.ci"),
    "dashboard": ("open the Streamlit dashboard on localhost",
                  (_dashboard_arguments, cmd_dashboard)),
    "calibrate": ("fit a simulator's stack profile to measured runs", "tuner.calibrate"),
    "profile-hardware": ("microbenchmark this device into a hardware profile",
                         "tuner.profile_hardware"),
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
    code = execute(args.func, args)
    if code == EXIT_INTERRUPTED:
        # the interruption is recorded; one more Ctrl-C/SIGTERM must not turn the exit into a
        # kill while Python shuts down (which restores the default handlers). Ignored for the
        # whole process: a mask would cover this thread only, and a signal sent to the
        # process may be delivered to any thread still running
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    return code


__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_OK", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())

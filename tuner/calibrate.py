"""``tuner calibrate``: fit a simulator's stack profile to real runs, write it as a file.

    tuner calibrate EVALUATOR --measurements RUNS.jsonl --out PROFILE.toml
    tuner calibrate EVALUATOR --study NAME [--storage URL] --out PROFILE.toml

``RUNS.jsonl`` holds one measured run per line, ``{"config": {...}, "metrics": {...}}`` with
the evaluator's config keys and any subset of its metric names; a study holds measured trials
(e.g. of ``serving-real``), whose configs and metrics are read the same way. The evaluator then
uses the profile through its ``profile`` option:
``tuner evaluate EVALUATOR --options '{"profile": "PROFILE.toml"}' ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuner._command import STORAGE_HELP, standalone
from tuner._errors import BadInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("evaluator", help="the simulator to calibrate (training-sim, serving-sim)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--measurements", help="JSON lines of measured runs")
    src.add_argument("--study", help="a stored study whose trials were measured")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--out", required=True, help="profile file to write (TOML)")
    p.add_argument("--constants", help="comma-separated constants to fit (default: every "
                   "constant the profile lets calibration move)")
    p.add_argument("--options", help="evaluator options as JSON")


def _study_rows(name: str, storage: str | None) -> list:
    from tuner._readonly_storage import ReadOnlyStorage
    from tuner.evaluators._calibration import Row
    from tuner.storage import storage_url

    ro = ReadOnlyStorage(storage_url(storage))
    info = ro.study(name)
    configs = ro.study_configs(info.study_id)
    rows = [Row(configs[t.trial_id], {k: v for k, v in t.metrics.items() if v > 0},
                f"trial {t.number}")
            for t in ro.fetch_trials(info.study_id, len(info.directions))
            if t.status == "ok" and t.trial_id in configs]
    if len(rows) < 2:
        raise BadInput("--study", f"study {name!r} holds {len(rows)} measured (ok) trials; "
                       "calibration needs at least 2")
    return rows


def run(args: argparse.Namespace) -> int:
    import json

    from tuner.evaluators._calibration import calibrate, read_rows, write_profile
    from tuner.registry import make_evaluator

    options = json.loads(args.options) if args.options else {}
    if not isinstance(options, dict):
        raise BadInput("--options", "must be a JSON object")
    evaluator = make_evaluator(args.evaluator, options)
    if not hasattr(evaluator, "evaluate_with"):
        raise BadInput("evaluator", f"{args.evaluator!r} has no stack profile to calibrate "
                       "(calibratable: training-sim, serving-sim)")
    out = Path(args.out)
    if out.suffix != ".toml":
        raise BadInput("--out", f"{args.out!r} must be a .toml path")
    if not out.parent.is_dir():
        raise BadInput("--out", f"{out.parent} is not a directory")
    if args.measurements:
        rows, source = read_rows(args.measurements), args.measurements
    else:
        rows, source = _study_rows(args.study, args.storage), f"study {args.study}"
    names = [c.strip() for c in args.constants.split(",") if c.strip()] if args.constants \
        else None
    report = calibrate(evaluator, rows, names)
    write_profile(report, out, source)
    for line in report.lines():
        print(line)
    print(f"wrote {out} (use it with --options '{{\"profile\": \"{out}\"}}')", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return standalone("tuner calibrate", add_arguments, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())

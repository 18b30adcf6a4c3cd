"""Exhaustive sweeps of the shipped simulator studies, beside the sampled run's cost per trial.

    python -m tuner.benchmarks.sweep_speed [--workers 1,2] [--sampled-trials 100] [--json]
                                           [--domains training,kernel,quant,serving]

For every ``studies/*.toml`` whose evaluator is analytical, ``tuner run --sampler exhaustive``
(the ``Sweep`` API, into a fresh SQLite file): valid configs scored, wall seconds from start to
the last trial stored, configs per wall second, the exact optimum (first objective) and how
many trials were stored. For the training studies, the same study run as it ships (its own
sampler, ``Runner`` with the evaluation pool, ``--sampled-trials`` trials) gives the sampled
search's wall seconds per trial, and what it would cost to reach every plan that way.

Exit code 1 when a training sweep scores fewer than ``--min-rate`` (10,000) plans per wall
second, or a sweep does not complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STUDIES = Path(__file__).resolve().parents[2] / "studies"
DOMAIN_OF = {"training": "training", "kernel-gemm": "kernel", "kernel-attention": "kernel",
             "quantization": "quant", "serving": "serving"}


def _studies(domains: set[str]) -> list[tuple[Path, Any]]:
    from tuner._setup import StudySetup
    from tuner.spec import load_spec

    out = []
    for path in sorted(STUDIES.glob("*.toml")):
        spec = load_spec(path)
        setup = StudySetup.build(spec, "exhaustive")
        if getattr(setup.evaluator_cls, "analytical", False) and \
                DOMAIN_OF.get(spec.space.domain) in domains:
            out.append((path, spec))
    return out


def sweep_once(path: Path, workers: int, folder: str) -> dict[str, Any]:
    from tuner._setup import StudySetup
    from tuner._sweep import Sweep
    from tuner.spec import load_spec

    spec = load_spec(path)
    url = f"sqlite:///{folder}/sweep-{path.stem}-{workers}.db"
    t0 = time.perf_counter()
    setup = StudySetup.build(spec, "exhaustive")
    summary = Sweep(setup, url, workers=workers, wall_time_s=3600).run()
    wall = time.perf_counter() - t0
    a = summary.attrs
    opt = a["optimum"][0]
    return {"study": spec.name, "workers": workers, "valid": a["counts"]["scored"],
            "feasible": a["counts"]["feasible"], "wall_s": round(wall, 2),
            "configs_per_s": round(a["counts"]["scored"] / wall, 1),
            "complete": a["complete"], "stored": summary.stored,
            "front": a["front_size"],
            "optimum": None if opt is None else f"{opt['metric']} {opt['value']:.6g}"}


def sampled_cost(path: Path, trials: int, folder: str) -> dict[str, Any]:
    from tuner.runner import Runner
    from tuner.spec import load_spec

    spec = load_spec(path)
    url = f"sqlite:///{folder}/sampled-{path.stem}.db"
    runner = Runner(spec, url, trials=trials, wall_time_s=3600, progress=False)
    t0 = time.perf_counter()
    s = runner.run()
    wall = time.perf_counter() - t0
    return {"sampler": runner.sampler_name, "trials": s.trials_this_run,
            "wall_s": round(wall, 2), "ms_per_trial": round(1000 * wall / max(1,
                                                                              s.trials_this_run),
                                                            2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1", help="comma-separated process counts (1,2)")
    ap.add_argument("--domains", default="training,kernel,quant,serving")
    ap.add_argument("--sampled-trials", type=int, default=100,
                    help="trials of each training study's own sampler (0: skip)")
    ap.add_argument("--min-rate", type=float, default=10_000.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    domains = set(args.domains.split(","))
    rows, sampled = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for path, spec in _studies(domains):
            for w in workers:
                row = sweep_once(path, w, folder)
                rows.append(row)
                if not args.json:
                    print(f"{row['study']:<36} {w} proc  {row['valid']:>7,} valid  "
                          f"{row['wall_s']:>7.2f} s  {row['configs_per_s']:>9,.0f}/s  "
                          f"{'complete' if row['complete'] else 'PARTIAL'}  stored "
                          f"{row['stored']:>4}  {row['optimum']}", flush=True)
            if spec.space.domain == "training" and args.sampled_trials:
                sampled[spec.name] = c = sampled_cost(path, args.sampled_trials, folder)
                if not args.json:
                    valid = rows[-1]["valid"]
                    print(f"{'':<36} sampled ({c['sampler']}, {c['trials']} trials): "
                          f"{c['ms_per_trial']:.1f} ms per trial = "
                          f"{1000 / c['ms_per_trial']:,.0f} trials/s; every plan that way: "
                          f"{valid * c['ms_per_trial'] / 1000:,.0f} s", flush=True)
    train = [r for r in rows if r["study"].startswith(("training-", "quickstart"))]
    ok = all(r["complete"] for r in rows) and all(r["configs_per_s"] >= args.min_rate
                                                  for r in train)
    meta = {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps({"meta": meta, "sweeps": rows, "sampled": sampled}, indent=1))
    else:
        load = f"load average {meta['load_average_1min']} on {meta['cpus']} cores"
        if train:
            worst = min(r["configs_per_s"] for r in train)
            print(f"\nslowest training sweep: {worst:,.0f} plans per wall second (target >= "
                  f"{args.min_rate:,.0f}: {'met' if ok else 'NOT met'}); {load}")
        else:
            print(f"\nno training study swept (the plans-per-second target is not checked); "
                  f"every sweep {'complete' if ok else 'NOT complete'}; {load}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

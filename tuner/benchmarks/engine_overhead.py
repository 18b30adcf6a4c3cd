"""Engine overhead per trial vs plain Optuna, same sampler, same machine, same run.

    python -m tuner.benchmarks.engine_overhead [--trials 1000]

A microsecond evaluator (the toy problem) makes wall time per trial equal to overhead. Three
loops: plain ``study.optimize`` on Optuna's SQLite defaults, plain Optuna in memory (the
sampler's own cost, a floor), and ``tuner``'s runner (process pool, hard timeouts, cache,
constraints and every trial stored in SQLite).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import optuna

from tuner.spec import parse_spec
from tuner.testing.toys import ToyEvaluator

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(evaluator: ToyEvaluator):
    def objective(trial: optuna.Trial) -> float:
        cfg = {"x": trial.suggest_int("x", 0, 20), "y": trial.suggest_int("y", 0, 20),
               "mode": trial.suggest_categorical("mode", ["a", "b", "c"])}
        res = evaluator.evaluate(cfg)
        return res.metrics.get("score", -1e12)
    return objective


def plain_optuna(trials: int, storage: str | None, seed: int) -> float:
    study = optuna.create_study(direction="maximize", storage=storage,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    t0 = time.perf_counter()
    study.optimize(_objective(ToyEvaluator()), n_trials=trials)
    return (time.perf_counter() - t0) / trials


def tuner_runner(trials: int, storage: str, seed: int) -> float:
    from tuner.runner import Runner

    spec = parse_spec({
        "name": "overhead", "seed": seed,
        "space": {"domain": "tuner.testing.toys:ToySpace"},
        "evaluator": {"name": "tuner.testing.toys:ToyEvaluator"},
        "objectives": [{"metric": "score", "direction": "maximize"}],
        "sampler": {"name": "tpe", "options": {"multivariate": False}},
        "budget": {"trials": trials}})
    runner = Runner(spec, storage, progress=False)
    t0 = time.perf_counter()
    summary = runner.run()
    assert summary.trials_total == trials, summary
    return (time.perf_counter() - t0) / trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_plain = f"sqlite:///{os.path.join(tmp, 'plain.db')}"
        sqlite_tuner = f"sqlite:///{os.path.join(tmp, 'tuner.db')}"
        rows = [
            ("plain Optuna, SQLite (defaults)", plain_optuna(args.trials, sqlite_plain,
                                                             args.seed)),
            ("plain Optuna, in memory", plain_optuna(args.trials, None, args.seed)),
            ("tuner run, SQLite", tuner_runner(args.trials, sqlite_tuner, args.seed)),
        ]
    base = rows[0][1]
    print(f"{args.trials} trials, TPE (univariate, Optuna defaults), toy evaluator "
          f"(~1 us), optuna {optuna.__version__}")
    print(f"{'loop':36s} {'ms/trial':>9s} {'vs plain SQLite':>16s}")
    for name, per in rows:
        print(f"{name:36s} {per * 1e3:9.2f} {per / base:15.2f}x")


if __name__ == "__main__":
    main()

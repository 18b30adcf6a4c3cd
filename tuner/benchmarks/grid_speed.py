"""The grid sampler's cost per proposal early and late in a 4,000-trial sweep.

Baseline: the same sampler re-reading the study's trials on every proposal (``RESYNC = 1``,
what it did before it kept its own set of visited points), side by side with the shipped one.
In-memory Optuna study on the kernel-gemm space of a 4096^3 bf16 GEMM (27,200 valid tiles,
so 4,000 trials never run out of grid points); no evaluation, so the figure is the sampler's
own cost plus Optuna's ask/tell.

Run: ``python -m tuner.benchmarks.grid_speed [--trials 4000]``
"""

from __future__ import annotations

import argparse
import time

import optuna

from tuner.samplers._grid import SpaceGridSampler
from tuner.search_spaces.kernels import GemmTileSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sweep(resync: int, trials: int, window: int = 100) -> tuple[float, float]:
    """(ms per proposal over the first ``window`` trials, over the last ``window``)."""
    space = GemmTileSpace({"m": 4096, "n": 4096, "k": 4096, "dtype": "bf16"})
    sampler = SpaceGridSampler(space, seed=0)
    sampler.RESYNC = resync
    study = optuna.create_study(sampler=sampler)
    times = []
    for _ in range(trials):
        t0 = time.perf_counter()
        trial = study.ask()
        space.suggest(trial)
        times.append(time.perf_counter() - t0)
        study.tell(trial, 1.0)
    first, last = times[:window], times[-window:]
    return 1e3 * sum(first) / len(first), 1e3 * sum(last) / len(last)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4000)
    args = p.parse_args(argv)
    print(f"grid sampler, ms per proposal (ask + suggest), {args.trials} trials, in memory")
    print(f"{'variant':<34} {'trials 1-100':>13} {'last 100':>13} {'ratio':>7}")
    for label, resync in (("re-read trials every proposal", 1),
                          (f"read once, again every {SpaceGridSampler.RESYNC}",
                           SpaceGridSampler.RESYNC)):
        early, late = sweep(resync, args.trials)
        print(f"{label:<34} {early:>13.3f} {late:>13.3f} {late / early:>7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

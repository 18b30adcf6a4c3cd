"""Which parameters matter: fANOVA importances for an objective or for feasibility."""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuner._readonly_storage import TrialRow
from tuner.analysis._common import Objective, finished, metric_value

#: fANOVA's cost grows with trials; a seeded sample of this many keeps it to about a second
MAX_TRIALS = 1000


@dataclass(frozen=True)
class Importances:
    """Share of the target's variance explained by each parameter (sums to 1 when defined).

    ``target`` names what was explained (an objective metric, or ``feasibility``). ``left_out``
    lists parameters absent from some of the used trials (conditional ones), which fANOVA
    cannot score across trials that lack them.
    """

    target: str
    importances: dict[str, float]
    n_trials: int
    left_out: tuple[str, ...]
    method: str


def _frozen(rows: Sequence[tuple[TrialRow, float]], distributions: Mapping[str, Any]) -> list:
    from optuna.trial import TrialState, create_trial

    out = []
    for r, y in rows:
        params = {k: v for k, v in r.params.items() if k in distributions}
        dists = {k: distributions[k] for k in params}
        try:
            out.append(create_trial(state=TrialState.COMPLETE, value=y, params=params,
                                    distributions=dists))
        except ValueError:  # value outside the (later narrowed) distribution: skip it
            continue
    return out


def param_importances(rows: Sequence[TrialRow], distributions: Mapping[str, Any],
                      target: str, objectives: Sequence[Objective] = (),
                      max_trials: int = MAX_TRIALS, seed: int = 0) -> Importances:
    """fANOVA importances (Hutter et al. 2014, Optuna's implementation) of the parameters.

    Args:
        rows: the study's trials.
        distributions: parameter name -> Optuna distribution (from the storage).
        target: an objective/metric name (explained over feasible trials), or
            ``"feasibility"`` (1 when a finished trial is infeasible, violates a constraint or
            failed, else 0, explained over every finished trial): which knobs decide
            whether a config works at all.
        objectives: the study's objectives (to read objective values).
        max_trials: trials used at most (a seeded random sample beyond that).
        seed: for the sample and the forest.
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    if target == "feasibility":
        pairs = [(r, 0.0 if r.feasible else 1.0) for r in finished(rows)]
    else:
        pairs = []
        for r in rows:
            if r.state == "COMPLETE" and r.feasible:
                v = metric_value(r, target, objectives)
                if v is not None and math.isfinite(v):
                    pairs.append((r, v))
    if len(pairs) > max_trials:
        pairs = random.Random(seed).sample(pairs, max_trials)
    names = set(distributions)
    common = set.intersection(*(set(r.params) for r, _ in pairs)) & names if pairs else set()
    left_out = tuple(sorted(names - common))
    trials = _frozen(pairs, {k: distributions[k] for k in common})
    method = "fANOVA"
    if len(trials) < 2 or not common or len({t.value for t in trials}) < 2:
        return Importances(target, {k: 0.0 for k in sorted(common)}, len(trials), left_out,
                           method)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per call
    try:
        study = optuna.create_study(direction="minimize")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.add_trials(trials)
            scores = FanovaImportanceEvaluator(seed=seed).evaluate(study)
    finally:
        optuna.logging.set_verbosity(verbosity)
    total = float(sum(scores.values()))
    imps = {k: (float(v) / total if total > 0 else 0.0) for k, v in scores.items()}
    return Importances(target, dict(sorted(imps.items(), key=lambda kv: -kv[1])), len(trials),
                       left_out, method)

"""Per-domain breakdown of the objectives of a study whose parameters span domains."""

from __future__ import annotations

import pytest

import tuner.analysis as A
from tuner._readonly_storage import TrialRow

COST = A.Objective("cost", "minimize")
DROP = A.Objective("drop", "minimize")
DOMAINS = {"tp": "serving plan", "bits": "quantization", "seqs": "scheduler"}


def _row(n, cost, drop, feasible=True, **params):
    return TrialRow(trial_id=n + 1, number=n, state="COMPLETE", status="ok", feasible=feasible,
                    values=(cost, drop), params=params, metrics={"cost": cost, "drop": drop})


def _rows():
    # cost depends on tp only; drop on bits only; seqs is noise that moves neither
    out, n = [], 0
    for tp in (1, 2, 4):
        for bits in (4, 8, 16):
            for seqs in (64, 128):
                out.append(_row(n, cost=10.0 / tp, drop={4: 0.05, 8: 0.01, 16: 0.0}[bits],
                                tp=tp, bits=bits, seqs=seqs))
                n += 1
    out.append(_row(n, cost=0.1, drop=0.0, feasible=False, tp=8, bits=16, seqs=64))
    return out


def test_each_objective_is_charged_to_the_domain_that_moves_it():
    parts = {b.objective: b for b in A.domain_breakdown(_rows(), DOMAINS, [COST, DROP])}
    assert parts["cost"].shares["serving plan"] == pytest.approx(1.0)
    assert parts["drop"].shares["quantization"] == pytest.approx(1.0)
    assert parts["cost"].shares.get("scheduler", 0.0) == 0.0
    assert parts["cost"].n_trials == 18  # the infeasible trial is left out


def test_front_moves_charge_neighbours_differences():
    rows = _rows()
    # front: the cheapest at each quality level differ in tp and bits together
    front = [r.number for r in rows if r.params["seqs"] == 64 and
             (r.params["tp"], r.params["bits"]) in ((4, 4), (2, 8), (1, 16))]
    parts = {b.objective: b for b in A.domain_breakdown(rows, DOMAINS, [COST, DROP], front)}
    assert parts["cost"].n_front == 3
    assert parts["cost"].front_moves == {"serving plan": pytest.approx(0.5),
                                         "quantization": pytest.approx(0.5),
                                         "scheduler": 0.0}


def test_no_variance_gives_no_shares():
    rows = [_row(i, 1.0, 0.0, tp=i % 2, bits=4, seqs=64) for i in range(6)]
    parts = A.domain_breakdown(rows, DOMAINS, [COST])
    assert parts[0].shares == {}

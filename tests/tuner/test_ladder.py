"""The fidelity ladder in one study: the screen's best are measured, the screen is
recalibrated from the residuals and its error falls; trials carry predicted and measured."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest
from conftest import write_toml

STUDY = {
    "name": "ladder", "seed": 0,
    "space": {"domain": "tuner.testing.toys:ToySpace", "context": {"max_sum": 30}},
    "evaluator": {"name": "tuner.testing.toys:ToyStackReal"},
    "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                   {"metric": "value", "direction": "maximize"}],
    "fidelity": {"screen": "tuner.testing.toys:ToyStackSim", "top_k": 4, "rounds": 3,
                 "recalibrate": True},
}


def _run(path, *extra):
    return subprocess.run([sys.executable, "-m", "tuner.cli", "run", path, *extra],
                          capture_output=True, text=True, timeout=300)


def test_ladder_measures_recalibrates_and_records(tmp_path):
    out = tmp_path / "calibrated.toml"
    study = {**STUDY, "fidelity": {**STUDY["fidelity"], "profile_out": str(out)}}
    proc = _run(write_toml(tmp_path / "s.toml", study))
    assert proc.returncode == 0, proc.stderr
    assert "round 1: measured 4 configs" in proc.stdout
    assert "recalibrated: speed = " in proc.stdout
    import optuna

    from tuner.storage import storage_url

    st = optuna.load_study(study_name="ladder", storage=storage_url(None))
    trials = st.trials
    assert len(trials) == 12
    rounds = st.user_attrs["tuner.fidelity"]
    assert [r["number"] for r in rounds] == [1, 2, 3]
    first, last = rounds[0]["error"]["latency_ms"], rounds[-1]["error"]["latency_ms"]
    assert first > 0.3 and last < 0.05, rounds  # the shipped profile is far off; the fit is not
    for t in trials:
        assert t.user_attrs["metrics"]["predicted_latency_ms"] > 0
        assert t.user_attrs["fidelity_round"] in (1, 2, 3)
        assert t.user_attrs["metrics"]["latency_ms"] > 0  # measured
    keys = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(keys)) == 12, "a config was measured twice"
    # the written profile moved both constants towards the truth (speed 2.5, overhead 12 ms;
    # configs on the front are overhead-dominated, so speed is only loosely pinned down)
    data = tomllib.loads(out.read_text())
    assert data["base"] == "toy-stack"
    assert data["constants"]["speed"] > 1.2
    assert data["constants"]["overhead_ms"] == pytest.approx(12.0, rel=0.2)
    assert data["uncertainty"]["latency_ms"] < 0.1


def test_bad_fidelity_tables_are_refused(tmp_path):
    bad = {**STUDY, "fidelity": {**STUDY["fidelity"], "top_k": 0}}
    proc = _run(write_toml(tmp_path / "a.toml", bad))
    assert proc.returncode == 2 and "fidelity.top_k" in proc.stderr
    bad = {**STUDY, "fidelity": {"screen": "no-such-sim"}}
    proc = _run(write_toml(tmp_path / "b.toml", bad))
    assert proc.returncode == 2 and "fidelity.screen" in proc.stderr and "serving-sim" in \
        proc.stderr
    proc = _run(write_toml(tmp_path / "c.toml", STUDY), "--trials", "5")
    assert proc.returncode == 2 and "--trials" in proc.stderr


def test_spread_picks_the_configs_farthest_from_what_was_measured():
    from tuner._ladder import spread

    grid = [{"slots": s, "threads": t, "kv": kv} for s in (1, 2, 4, 8) for t in (1, 2)
            for kv in ("f16", "q8_0")]
    top = [{"slots": 8, "threads": 2, "kv": "f16"}, {"slots": 8, "threads": 2, "kv": "q8_0"}]
    first, second = (grid[i] for i in spread(grid, top, 2))
    assert first["slots"] == 1 and first["threads"] == 1  # the far corner
    assert second["threads"] == 1 and second["slots"] < 8 and second["kv"] != first["kv"]
    assert spread(top, top, 3) == []  # nothing new: nothing chosen


def test_explore_pins_down_what_the_top_of_the_front_cannot(tmp_path):
    out = tmp_path / "calibrated.toml"
    fid = {**STUDY["fidelity"], "top_k": 2, "explore": 2, "profile_out": str(out)}
    proc = _run(write_toml(tmp_path / "s.toml", {**STUDY, "fidelity": fid}))
    assert proc.returncode == 0, proc.stderr
    assert "round 1: measured 4 configs (2 spread)" in proc.stdout
    import optuna

    from tuner.analysis import ladder_rounds
    from tuner.storage import storage_url

    rounds = optuna.load_study(study_name="ladder", storage=storage_url(None)).user_attrs[
        "tuner.fidelity"]
    assert [(r["round"], r["measured"], r["spread"]) for r in ladder_rounds(rounds)] == \
        [(1, 4, 2), (2, 4, 2), (3, 4, 2)]
    assert all(set(r["spread"]) <= set(r["measured"]) for r in rounds)
    data = tomllib.loads(out.read_text())
    # the truth: speed 2.5, overhead 12 ms (top-k alone leaves speed loosely pinned down)
    assert data["constants"]["speed"] == pytest.approx(2.5, rel=0.1)
    assert data["constants"]["overhead_ms"] == pytest.approx(12.0, rel=0.1)

"""``tuner ci``: baseline recording, drift measurement, verdicts, reports, bad input."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from tuner import BadInput
from tuner.benchmarks.reliability import toy_study_toml, tuner_cmd
from tuner.ci import better_pct, judge, parse_budget
from tuner.cli import main

REPO = Path(__file__).resolve().parents[2]
TWO_OBJECTIVES = (("score", "maximize"), ("cost", "minimize"))


def _study(tmp_path: Path, penalty: float = 0.0, name: str = "nightly", **kw) -> Path:
    path = tmp_path / f"{name}-{penalty:g}.toml"
    path.write_text(toy_study_toml(name, trials=12, objectives=kw.pop("objectives",
                                                                       TWO_OBJECTIVES),
                                   options={"penalty": penalty}, **kw))
    return path


def _ci(study: Path, baseline: Path, report: Path, *extra: str) -> int:
    return main(["ci", str(study), "--baseline", str(baseline), "--report", str(report),
                 "--quiet", *extra])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A baseline recorded by a first run (through the real command line)."""
    tmp = tmp_path_factory.mktemp("ci-first-run")
    baseline = tmp / "baselines" / "nightly.json"
    proc = subprocess.run(tuner_cmd("ci", str(_study(tmp)), "--baseline", str(baseline),
                                    "--update-baseline", "--report", str(tmp / "r0"),
                                    "--quiet"), capture_output=True, text=True, timeout=300,
                          cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return tmp


@pytest.fixture
def recorded(first_run, tmp_path):
    """This test's own copy of the recorded baseline."""
    baseline = tmp_path / "nightly.json"
    baseline.write_bytes((first_run / "baselines" / "nightly.json").read_bytes())
    return baseline


def test_first_run_records_the_baseline_and_writes_the_report(first_run):
    tmp_path = first_run
    data = json.loads((first_run / "baselines" / "nightly.json").read_text())
    assert data["schema"] == "tuner-ci-baseline/1"
    assert [o["metric"] for o in data["objectives"]] == ["score", "cost"]
    assert len(data["best"]["values"]) == 2 and data["pareto"] and data["top"]
    assert data["fingerprint"]
    report = json.loads((tmp_path / "r0" / "report.json").read_text())
    assert report["passed"] and report["baseline"] is None and report["baseline_updated"]
    assert report["trials_total"] == 12
    summary = (tmp_path / "r0" / "summary.md").read_text()
    assert "first run" in summary and "## Pareto front" in summary
    png = (tmp_path / "r0" / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_unchanged_system_passes_and_leaves_the_baseline_alone(tmp_path, recorded):
    before = recorded.read_bytes()
    assert _ci(_study(tmp_path), recorded, tmp_path / "r1") == 0
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert report["passed"] and not report["failures"]
    base_best = json.loads(before)["best"]
    # the baseline's best config was measured again, on the current evaluator
    assert report["baseline"]["recheck"]["metrics"]["score"] == base_best["values"][0]
    assert report["drift_pct"] == {"score": 0.0, "cost": 0.0}
    assert report["change_pct"]["score"] >= 0, "warm start re-evaluates the baseline's best"
    assert base_best["params"] in report["warm_start"]
    assert recorded.read_bytes() == before, "baseline changed without --update-baseline"
    summary = (tmp_path / "r1" / "summary.md").read_text()
    assert "passed" in summary and "baseline config now" in summary and "plot.png" in summary


def test_regressed_system_fails_with_exit_3_and_says_why(tmp_path, recorded, capsys):
    before = recorded.read_bytes()
    assert _ci(_study(tmp_path, penalty=20.0), recorded, tmp_path / "r2") == 3
    out = capsys.readouterr().out
    assert "REGRESSION" in out
    report = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert not report["passed"]
    assert any("baseline's best config regressed on score" in f for f in report["failures"])
    assert report["drift_pct"]["score"] < -5
    assert any("fingerprint changed" in n for n in report["notes"])
    assert "regression" in (tmp_path / "r2" / "summary.md").read_text()
    assert recorded.read_bytes() == before


def test_threshold_decides_small_drifts(tmp_path, recorded):
    best = json.loads(recorded.read_text())["best"]["values"][0]
    drift = 100 * 1.0 / best  # penalty 1 on the score
    assert _ci(_study(tmp_path, penalty=1.0), recorded, tmp_path / "r3",
               "--max-regression", f"{drift + 1:.3f}") == 0
    assert _ci(_study(tmp_path, penalty=1.0), recorded, tmp_path / "r4",
               "--max-regression", f"{drift / 2:.3f}") == 3


def test_update_baseline_replaces_it_only_when_asked(tmp_path, recorded):
    assert _ci(_study(tmp_path, penalty=20.0), recorded, tmp_path / "r5",
               "--update-baseline") == 3  # the verdict is still against the old baseline
    new = json.loads(recorded.read_text())
    report = json.loads((tmp_path / "r5" / "report.json").read_text())
    assert report["baseline_updated"] and new["run"] == report["run"]
    assert new["best"] == report["best"]
    assert _ci(_study(tmp_path, penalty=20.0), recorded, tmp_path / "r6") == 0


def test_baseline_config_outside_the_current_space_is_a_regression(tmp_path, recorded):
    best_x = json.loads(recorded.read_text())["best"]["params"]["x"]
    other = [v for v in range(1, 21) if v != best_x][:4]
    study = _study(tmp_path, params=f"[space.params.x]\nchoices = {other}")
    assert _ci(study, recorded, tmp_path / "r7") == 3
    report = json.loads((tmp_path / "r7" / "report.json").read_text())
    assert any("not a valid config" in f for f in report["failures"])


def test_single_objective_report_plots_best_so_far(tmp_path):
    study = _study(tmp_path, name="single", objectives=(("score", "maximize"),))
    baseline = tmp_path / "single.json"
    assert _ci(study, baseline, tmp_path / "s1", "--update-baseline", "--budget", "12") == 0
    assert _ci(study, baseline, tmp_path / "s2", "--budget", "12",
               "--warm-start", str(tmp_path / "s1" / "report.json")) == 0
    report = json.loads((tmp_path / "s2" / "report.json").read_text())
    assert report["budget"]["trials"] == 12 and report["trials_total"] == 12
    assert report["hypervolume"] is None and report["warm_start"]
    assert (tmp_path / "s2" / "plot.png").stat().st_size > 5000


@pytest.mark.parametrize("args, field", [
    (["--budget", "3x"], "--budget"),
    (["--budget", "0"], "--budget"),
    (["--max-regression", "-1"], "--max-regression"),
    (["--trials", "0"], "--trials"),
    (["--timeout", "-5"], "--timeout"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, field):
    # arguments are checked before anything runs (the baseline does not even exist)
    assert _ci(_study(tmp_path), tmp_path / "b.json", tmp_path / "rx", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {field}") and len(err.splitlines()) == 1


def test_bad_baselines_exit_2(tmp_path, capsys):
    study = _study(tmp_path)
    cases = {"missing.json": None, "garbage.json": "{not json", "list.json": "[1, 2]",
             "nobest.json": json.dumps({"objectives": [{"metric": "score",
                                                        "direction": "maximize"}]}),
             "nanbest.json": json.dumps({"objectives": [
                 {"metric": "score", "direction": "maximize"},
                 {"metric": "cost", "direction": "minimize"}],
                 "best": {"params": {}, "values": [1.0, "x"]}}),
             "wrongobj.json": json.dumps({"objectives": [
                 {"metric": "cost", "direction": "minimize"}],
                 "best": {"params": {"x": 1, "y": 1, "mode": "a"}, "values": [3.0]}})}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        assert _ci(study, path, tmp_path / "bad") == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --baseline") and len(err.splitlines()) == 1, err


def test_help_and_option_first_invocations_work(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ci", "--help"])
    assert exc.value.code == 0
    assert "--max-regression" in capsys.readouterr().out


def test_budget_parsing():
    assert parse_budget("200") == (200, None)
    assert parse_budget("90s") == (None, 90.0)
    assert parse_budget("30m") == (None, 1800.0)
    assert parse_budget("1.5h") == (None, 5400.0)
    for bad in ("", "abc", "-3", "2.5", "10d"):
        with pytest.raises(BadInput, match="--budget"):
            parse_budget(bad)


def test_verdict_logic():
    objs = [{"metric": "t", "direction": "minimize"}, {"metric": "m", "direction": "minimize"}]
    base = {"best": {"values": [100.0, 10.0]}}
    assert better_pct(90, 100, "minimize") == pytest.approx(10)
    assert better_pct(90, 100, "maximize") == pytest.approx(-10)
    assert better_pct(1, 0, "maximize") == math.inf
    best = {"values": [104.0, 9.0]}
    recheck = {"status": "ok", "feasible": True, "metrics": {"t": 100.0, "m": 12.0}}
    v, nums = judge(objs, base, best, recheck, 5.0)
    assert v.passed is False and len(v.failures) == 1 and "regressed on m" in v.failures[0]
    assert nums["change_pct"]["t"] == pytest.approx(-4.0)
    v, _ = judge(objs, base, best, {**recheck, "metrics": {"t": 101.0, "m": 10.0}}, 5.0)
    assert v.passed
    v, _ = judge(objs, base, {"values": [110.0, 9.0]}, None, 5.0)
    assert not v.passed and "10.0% worse" in v.failures[0]
    v, _ = judge(objs, base, best, {"status": "infeasible", "reason": "OOM", "metrics": {}},
                 5.0)
    assert not v.passed and "now infeasible: OOM" in v.failures[0]
    v, _ = judge(objs, None, None, None, 5.0)
    assert not v.passed and "no feasible trial" in v.failures[0]


def test_github_workflow_runs_the_job_on_a_schedule_and_uploads_the_report():
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load((REPO / ".github" / "workflows" / "tuner-ci.yml").read_text())
    triggers = wf.get("on", wf.get(True))
    assert triggers["schedule"][0]["cron"].count(" ") == 4
    assert "update_baseline" in triggers["workflow_dispatch"]["inputs"]
    steps = wf["jobs"]["tune"]["steps"]
    run = "\n".join(s.get("run", "") for s in steps)
    assert "tuner \"${args[@]}\"" in run and "args=(ci " in run and "--baseline" in run
    assert "--update-baseline" in run and "GITHUB_STEP_SUMMARY" in run
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["if"] == "always()"
    assert wf["permissions"] == {"contents": "read"}


def test_a_baseline_recorded_for_another_study_is_refused(tmp_path, recorded, capsys):
    other = _study(tmp_path, name="weekly")  # same objectives, another study
    assert _ci(other, recorded, tmp_path / "r") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--baseline" in err[0] and "recorded for study 'nightly', " \
        "not 'weekly'" in err[0], err
    assert not (tmp_path / "r").exists()  # refused before anything ran

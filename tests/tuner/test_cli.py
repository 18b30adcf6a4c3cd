"""The command line through a real subprocess: exit codes, one-line errors, JSON contract."""

import json
import os
import subprocess
import sys

import pytest
from conftest import toy_study, write_toml

TOY_EVAL = "tuner.testing.toys:ToyEvaluator"


def tuner(*args, env=None, input=None):
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, input=input,
                          timeout=120)


def assert_bad_input(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_run_show_pareto_export(tmp_path):
    study = write_toml(tmp_path / "s.toml", toy_study(trials=25))
    proc = tuner("run", study)
    assert proc.returncode == 0, proc.stderr
    assert "Pareto front" in proc.stdout and "hypervolume" in proc.stdout
    show = tuner("show", "toy")
    assert show.returncode == 0 and "25 total" in show.stdout
    pareto = tuner("pareto", "toy", "--format", "json")
    front = json.loads(pareto.stdout)
    assert front and all(r["feasible"] for r in front)
    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"t.{fmt}"
        proc = tuner("export", "toy", "--format", fmt, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert out.stat().st_size > 0
    csv_text = (tmp_path / "t.csv").read_text()
    assert csv_text.splitlines()[0].startswith("trial,state,status")
    assert len(csv_text.splitlines()) == 26


def test_evaluate_one_config_json_contract():
    proc = tuner("evaluate", TOY_EVAL, "--config", '{"x": 14, "y": 6, "mode": "b"}', "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"status": "ok", "metrics": {"score": 105.0, "cost": 20.0}, "reason": None}


def test_evaluate_configs_file_keeps_order(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"x": 1, "y": 1}\n{"x": 0, "y": 1}\n\n{"x": 14, "y": 6}\n')
    proc = tuner("evaluate", TOY_EVAL, "--configs-file", str(f), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "infeasible", "ok"]
    assert rows[1]["reason"] and rows[2]["metrics"]["cost"] == 20.0


@pytest.mark.parametrize("args, words", [
    (("evaluate", TOY_EVAL, "--config", "{not json"), ("--config", "invalid JSON")),
    (("evaluate", TOY_EVAL, "--config", "[1, 2]"), ("--config", "JSON object")),
    (("evaluate", "no-such-evaluator", "--config", "{}"), ("evaluator.name", "valid:")),
    (("evaluate", TOY_EVAL), ("exactly one of",)),
    (("run", "/nonexistent/study.toml"), ("study", "file not found")),
    (("show", "missing-study"), ("storage", "no database file")),
    (("run",), ("required",)),
    (("frobnicate",), ("invalid choice",)),
])
def test_bad_input_exits_2_with_one_line(args, words):
    assert_bad_input(tuner(*args), *words)


def test_bad_line_in_configs_file_is_named(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"x": 1, "y": 1}\n{"x": \n')
    assert_bad_input(tuner("evaluate", TOY_EVAL, "--configs-file", str(f)), "c.jsonl line 2")


def test_bad_study_file_keeps_the_stored_study(tmp_path):
    good = write_toml(tmp_path / "good.toml", toy_study(trials=8))
    assert tuner("run", good).returncode == 0
    data = toy_study(trials=20)
    data["budget"]["trials"] = -1
    bad = write_toml(tmp_path / "bad.toml", data)
    assert_bad_input(tuner("run", bad), "budget.trials")
    assert "8 total" in tuner("show", "toy").stdout


def test_storage_flag_and_env_var(tmp_path):
    study = write_toml(tmp_path / "s.toml", toy_study(trials=5))
    url = f"sqlite:///{tmp_path / 'other.db'}"
    assert tuner("run", study, "--storage", url).returncode == 0
    assert tuner("show", "toy", "--storage", url).returncode == 0
    assert tuner("show", "toy").returncode == 2  # not in the default storage
    assert tuner("show", "toy", env={"TUNER_STORAGE": url}).returncode == 0


def test_catalog_lists_everything():
    proc = tuner("catalog")
    assert proc.returncode == 0
    for word in ("training-sim", "tpe", "h100_sxm", "llama3.1-70b", "kernel-gemm",
                 "torchtitan", "trtllm", "[space] domain"):  # the study file's table names
        assert word in proc.stdout


def test_ctrl_c_stops_cleanly_and_keeps_completed_trials(tmp_path):
    import signal
    import sqlite3
    import time

    from tuner.benchmarks.reliability import default_sigint

    data = toy_study(trials=100000)
    data["evaluator"] = {"name": "tuner.testing.toys:FaultyEvaluator",
                         "options": {"mode": "hang", "trigger_x": 3}}
    data["budget"]["trial_timeout_s"] = 2
    study = write_toml(tmp_path / "s.toml", data)
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "run", study],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    db = tmp_path / "tuner.db"  # TUNER_STORAGE (tests/conftest.py)

    def stored() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return conn.execute("select count(*) from trials where state = 'COMPLETE'"
                                    ).fetchone()[0]
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 120
    while stored() < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # the hanging trial (x = 3) is usually running by now
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted (Ctrl-C)" in out
    stored = int(out.split(" stored;")[0].rsplit(";", 1)[-1].strip().split()[0])
    show = tuner("show", "toy")
    assert show.returncode == 0 and f"({stored} total)" in show.stdout
    assert "state: interrupted" in show.stdout


def test_validate_json_is_strict_json_and_a_directory_is_refused(tmp_path, monkeypatch, capsys):
    from tuner import registry
    from tuner.cli import main

    monkeypatch.setitem(registry.VALIDATIONS, "toy", "tuner.testing.toys:toy_validation")
    out = tmp_path / "v.json"
    assert main(["validate", "toy", "--json", str(out), "--check"]) == 0

    def no_nan(name):
        raise AssertionError(f"{name} is not JSON")

    summary = json.loads(out.read_text(), parse_constant=no_nan)["summary"]
    assert summary["speed"]["target_mean_pct"] == 15.0
    assert summary["memory"]["target_mean_pct"] is None  # informational: no target
    capsys.readouterr()
    assert main(["validate", "toy", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err

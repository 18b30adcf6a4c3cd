"""The trial writer stores exactly the rows Optuna's own ``add_trial`` stores, and a tuner
database stays usable after ``optuna storage upgrade``."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from conftest import toy_study, write_toml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tuner._trial_writer import TrialWriter
from tuner.storage import open_rdb

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000)
T1 = datetime(2026, 1, 2, 3, 4, 9, 123000)
DISTS = {"x": IntDistribution(0, 20), "lr": FloatDistribution(1e-4, 1e-1, log=True),
         "mode": CategoricalDistribution(["a", "b", None, 2.5])}
CASES = {
    "complete": create_trial(
        state=TrialState.COMPLETE, values=[1.5, float("inf")], params={"x": 3, "lr": 0.01,
                                                                       "mode": None},
        distributions=DISTS, user_attrs={"config": {"x": 3, "nested": [1, {"a": None}]},
                                         "status": "ok", "reason": None, "eval_s": 0.25},
        system_attrs={"constraints:feasible": 0.0, "constraints:mem <= 80": -3.5,
                      "constraints": [0.0, -3.5]}),
    "pruned": create_trial(
        state=TrialState.PRUNED, params={"x": 0, "lr": 0.1, "mode": "b"}, distributions=DISTS,
        user_attrs={"status": "infeasible", "reason": "does not fit", "metrics": {}},
        system_attrs={"constraints:feasible": 1.0, "constraints": [1.0]}),
    "failed": create_trial(
        state=TrialState.FAIL, params={"x": 20, "lr": 1e-4, "mode": 2.5}, distributions=DISTS,
        user_attrs={"status": "failed", "reason": "boom"}),
    "negative-inf": create_trial(
        state=TrialState.COMPLETE, values=[-float("inf"), 0.0], params={"x": 1},
        distributions={"x": DISTS["x"]}),
}
TABLES = {"trials": ("number", "state", "datetime_start", "datetime_complete"),
          "trial_params": ("param_name", "param_value", "distribution_json"),
          "trial_values": ("objective", "value", "value_type"),
          "trial_user_attributes": ("key", "value_json"),
          "trial_system_attributes": ("key", "value_json"),
          "trial_intermediate_values": ("step", "intermediate_value", "intermediate_value_type")}


def _rows(engine: sa.Engine, study_id: int) -> dict[str, list[tuple]]:
    out = {}
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text(
            "SELECT trial_id FROM trials WHERE study_id = :s ORDER BY number"), {"s": study_id})]
        for table, cols in TABLES.items():
            rows = []
            for tid in ids:
                key = "trial_id"
                q = f"SELECT {', '.join(cols)} FROM {table} WHERE {key} = :t"
                rows += sorted(tuple(r) for r in conn.execute(sa.text(q), {"t": tid}))
            out[table] = rows
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_rows_equal_what_optunas_add_trial_writes(tmp_path, case):
    trial = CASES[case]
    trial.datetime_start, trial.datetime_complete = T0, T1
    ours = open_rdb(f"sqlite:///{tmp_path / 'ours.db'}")
    sid = ours.create_new_study([optuna.study.StudyDirection.MINIMIZE] * 2, "s")
    TrialWriter(ours.engine, sid).write(trial)
    theirs = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'theirs.db'}")
    study = optuna.create_study(storage=theirs, study_name="s",
                                directions=["minimize", "minimize"])
    study.add_trial(trial)
    assert _rows(ours.engine, sid) == _rows(theirs.engine, study._study_id)
    # and Optuna reads ours back as the same trial
    back = ours.get_all_trials(sid)[0]
    for field in ("state", "values", "params", "distributions", "user_attrs", "system_attrs",
                  "datetime_start", "datetime_complete"):
        assert getattr(back, field) == getattr(trial, field), field


def test_the_list_form_is_added_when_only_the_named_form_was_set(tmp_path):
    trial = create_trial(state=TrialState.COMPLETE, values=[1.0, 2.0], params={},
                         distributions={}, system_attrs={"constraints:feasible": 0.0,
                                                         "constraints:t <= 3": 1.5})
    ours = open_rdb(f"sqlite:///{tmp_path / 'ours.db'}")
    sid = ours.create_new_study([optuna.study.StudyDirection.MINIMIZE] * 2, "s")
    TrialWriter(ours.engine, sid).write(trial)
    back = ours.get_all_trials(sid)[0]
    assert back.system_attrs["constraints"] == [0.0, 1.5]


def _optuna_cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("optuna")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "optuna.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300)


def _tuner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_optuna_storage_upgrade_keeps_a_tuner_database_working(tmp_path):
    url = f"sqlite:///{tmp_path / 'up.db'}"
    study = write_toml(tmp_path / "s.toml", toy_study(trials=6))
    assert _tuner("run", study, "--storage", url, "--quiet").returncode == 0
    up = _optuna_cli("storage", "upgrade", "--storage", url)
    assert up.returncode == 0, up.stderr
    show = _tuner("show", "toy", "--storage", url)
    assert show.returncode == 0 and "(6 total)" in show.stdout, show.stderr
    again = _tuner("run", study, "--storage", url, "--quiet", "--trials", "9")
    assert again.returncode == 0, again.stderr
    assert len(optuna.load_study(study_name="toy", storage=url).trials) == 9


def test_a_schema_older_than_optuna_names_the_upgrade_command_then_works(tmp_path):
    """A database at an older Optuna schema revision (made with Optuna's own migrations):
    every command says how to upgrade it in one line; after the upgrade tuner runs on it."""
    from alembic import command as alembic_command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    rdb_dir = Path(optuna.storages._rdb.__file__).parent
    config = Config(str(rdb_dir / "alembic.ini"))
    config.set_main_option("script_location", str(rdb_dir / "alembic"))
    config.set_main_option("sqlalchemy.url", url)
    # Optuna's own migrations build the tables as they were at v3.0.0.d (before v3.2.0.a)
    alembic_command.upgrade(config, "v3.0.0.d")
    study = write_toml(tmp_path / "s.toml", toy_study(trials=4))
    for args in (("run", study, "--storage", url, "--quiet"), ("show", "toy", "--storage", url)):
        proc = _tuner(*args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "older than the installed Optuna" in lines[0] and \
            "optuna storage upgrade --storage URL" in lines[0], lines[0]
    up = _optuna_cli("storage", "upgrade", "--storage", url)
    assert up.returncode == 0, up.stderr
    done = _tuner("run", study, "--storage", url, "--quiet")
    assert done.returncode == 0, done.stderr

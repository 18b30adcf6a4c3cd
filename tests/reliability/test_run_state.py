"""The recorded study state after every way a run can end: ``interrupted`` after SIGTERM or a
double Ctrl-C, ``failed`` (with the error) after a crash or a full disk, never ``running`` or
``finished`` when it is not; a runner killed outright is read as interrupted."""

from __future__ import annotations

import signal
import subprocess
import tomllib
from typing import Any

import optuna
import pytest
import sqlalchemy as sa

from tuner._errors import TunerError
from tuner.benchmarks.reliability import (
    default_sigint,
    kill_group,
    spawn,
    stored_trials,
    toy_study_toml,
    tuner_cmd,
    wait_until,
)
from tuner.runner import Runner
from tuner.spec import parse_spec


def _state(url: str, name: str) -> dict[str, Any]:
    storage = optuna.storages.RDBStorage(url)
    try:
        return storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    finally:
        storage.engine.dispose()


def _count(url: str, name: str) -> int:
    try:
        return len(stored_trials(url, name))
    except Exception:
        return 0


def _started(tmp_path, name: str, trials: int = 400) -> tuple[subprocess.Popen, str]:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    study = tmp_path / "s.toml"
    study.write_text(toy_study_toml(name, trials=trials, options={"sleep_s": 0.15}))
    proc = subprocess.Popen(tuner_cmd("run", str(study), "--storage", url, "--quiet"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    wait_until(lambda: _count(url, name) >= 3, 120, "3 stored trials")
    return proc, url


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT],
                                     [signal.SIGTERM, signal.SIGINT, signal.SIGTERM]],
                         ids=["sigterm", "double-ctrl-c", "three-signals"])
def test_signals_end_the_run_as_interrupted(tmp_path, signals):
    proc, url = _started(tmp_path, "sig")
    try:
        for sig in signals:
            proc.send_signal(sig)
            if len(signals) > 1:
                import time

                time.sleep(0.05)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert _state(url, "sig")["tuner.state"] == "interrupted"
    numbers = [t.number for t in stored_trials(url, "sig")]
    assert sorted(numbers) == list(range(len(numbers)))


def test_a_runner_killed_outright_reads_as_interrupted(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    study = tmp_path / "s.toml"
    study.write_text(toy_study_toml("killed", trials=400, options={"sleep_s": 0.15}))
    proc = spawn(tuner_cmd("run", str(study), "--storage", url, "--quiet"), tmp_path / "k.log")
    try:
        wait_until(lambda: _count(url, "killed") >= 3, 120, "3 stored trials")
    finally:
        kill_group(proc)
        proc.wait(timeout=30)
    assert _state(url, "killed")["tuner.state"] == "running"  # nobody could record it
    show = subprocess.run(tuner_cmd("show", "killed", "--storage", url), capture_output=True,
                          text=True, timeout=120)
    assert show.returncode == 0, show.stderr
    assert "state: interrupted (recorded as running, but no run holds the study)" in \
        show.stdout, show.stdout


class ExplodingSampler(optuna.samplers.RandomSampler):
    """Raises in the runner's own process on the fifth proposal (a sampler bug)."""

    def before_trial(self, study: Any, trial: Any) -> None:
        if trial.number == 4:
            raise RuntimeError("sampler bug")
        super().before_trial(study, trial)


def test_a_crash_in_the_runner_is_recorded_as_failed(tmp_path):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    spec = parse_spec(tomllib.loads(toy_study_toml(
        "crash", trials=20, sampler="test_run_state:ExplodingSampler")))
    with pytest.raises(RuntimeError, match="sampler bug"):
        Runner(spec, url, progress=False).run()
    attrs = _state(url, "crash")
    assert attrs["tuner.state"] == "failed"
    assert attrs["tuner.error"] == "RuntimeError: sampler bug"
    assert len(stored_trials(url, "crash")) == 4


def test_a_full_disk_is_one_line_and_recorded_as_failed(tmp_path):
    url = f"sqlite:///{tmp_path / 'full.db'}"
    spec = parse_spec(tomllib.loads(toy_study_toml("full", trials=5000)))
    runner = Runner(spec, url, progress=False)

    @sa.event.listens_for(runner.rdb.engine, "connect")
    def _little_room(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        pages = cur.execute("PRAGMA page_count").fetchone()[0]
        cur.execute(f"PRAGMA max_page_count = {pages + 12}")  # a disk with ~48 KiB left
        cur.close()

    runner.rdb.engine.dispose()
    with pytest.raises(TunerError) as exc:
        runner.run()
    msg = str(exc.value)
    assert msg == ("the storage is full (database or disk is full): free space, then re-run "
                   "to resume; completed trials are stored"), msg
    runner.rdb.engine.dispose()
    attrs = _state(url, "full")
    assert attrs["tuner.state"] == "failed" and "is full" in attrs["tuner.error"]
    kept = stored_trials(url, "full")
    assert 0 < len(kept) < 5000
    assert sorted(t.number for t in kept) == list(range(len(kept)))

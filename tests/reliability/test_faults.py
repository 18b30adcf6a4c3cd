"""Runner fault paths through the real process pool, and a killed runner that resumes.

Every scenario checks the same promise: the study reaches its budget, every trial that
finished is stored exactly once, and every failure has its reason stored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib

import pytest
from optuna.trial import TrialState

from tuner.benchmarks.reliability import (
    config_of,
    default_sigint,
    read_log,
    spawn,
    stored_trials,
    toy_study_toml,
    tuner_cmd,
    wait_until,
)
from tuner.runner import Runner
from tuner.spec import parse_spec

# mode -> (trial timeout, memory limit MiB, words the stored reason must contain)
FAULTS = {
    "raise": (30.0, None, "RuntimeError: boom: evaluator bug"),
    "exit": (30.0, None, "exited with code 3"),
    "alloc": (30.0, 1024, "out of memory (worker limit 1024 MiB)"),
    "hang": (1.0, None, "timed out after 1 s (killed by the runner)"),
}


def _faulty_study(tmp_path, mode: str, trials: int):
    """A grid over x in {3, 4} (x = 3 faults) and ``trials / 2`` values of y: every config once,
    so exactly half of the trials are faulty."""
    timeout, memory, _ = FAULTS[mode]
    params = (f"[space.params.x]\nchoices = [3, 4]\n[space.params.y]\nchoices = "
              f"{list(range(trials // 2))}\n[space.params.mode]\nfixed = \"b\"")
    toml = toy_study_toml(f"faults-{mode}", trials=trials, sampler="grid",
                          evaluator="tuner.testing.toys:FaultyEvaluator",
                          options={"mode": mode, "trigger_x": 3}, timeout_s=timeout,
                          memory_mib=memory, params=params)
    return parse_spec(tomllib.loads(toml)), f"sqlite:///{tmp_path / 'faults.db'}"


@pytest.mark.parametrize("mode", list(FAULTS))
def test_faulty_evaluation_fails_only_its_trial_with_the_reason_stored(tmp_path, mode):
    trials = 4 if mode == "hang" else 8
    spec, url = _faulty_study(tmp_path, mode, trials)
    t0 = time.monotonic()
    summary = Runner(spec, url, progress=False).run()
    elapsed = time.monotonic() - t0
    stored = stored_trials(url, spec.name)

    assert summary.trials_total == len(stored) == trials, "every trial stored, none lost"
    assert sorted(t.number for t in stored) == list(range(trials))
    faulty = [t for t in stored if t.params["x"] == 3]
    healthy = [t for t in stored if t.params["x"] == 4]
    assert len(faulty) == len(healthy) == trials // 2, "the grid visits every config once"
    for t in faulty:
        assert t.state == TrialState.FAIL
        assert t.user_attrs["status"] == "failed"
        assert FAULTS[mode][2] in t.user_attrs["reason"], t.user_attrs["reason"]
        assert not t.user_attrs["cached"], "failures are never served from the cache"
    for t in healthy:  # the pool replaced the broken process and went on
        assert t.state == TrialState.COMPLETE and t.user_attrs["status"] == "ok"
        assert t.user_attrs["metrics"]["score"] == pytest.approx(
            100 - (4 - 14) ** 2 - (t.params["y"] - 6) ** 2 + 5)  # mode fixed to "b"
    assert summary.failed == len(faulty)
    if mode == "hang":  # the timeout is enforced from outside, per trial
        assert elapsed < 20 * len(faulty) + 30


def test_runner_killed_with_sigkill_resumes_without_losing_or_redoing_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    log = tmp_path / "evals.jsonl"
    study = tmp_path / "study.toml"
    # 0.25 s per trial: the run lasts ~5 s, a wide window to kill it in on a busy host
    study.write_text(toy_study_toml("kill-resume", trials=40,
                                    options={"sleep_s": 0.25, "log": str(log)}))
    proc = spawn(tuner_cmd("run", str(study), "--storage", url, "--quiet", "--workers", "2"),
                 tmp_path / "run1.out")

    def stored_count() -> int:
        try:
            return len(stored_trials(url, "kill-resume"))
        except Exception:
            return 0

    try:
        wait_until(lambda: stored_count() >= 12, 120, "12 stored trials")
        proc.send_signal(signal.SIGKILL)  # the runner only: its pool must not outlive it
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {t.number: (t.params, t.values, t.user_attrs["status"])
              for t in stored_trials(url, "kill-resume")}
    evaluated_before = {config_of(r) for r in read_log(log)}
    assert 12 <= len(before) < 40, "killed mid-study"

    def group_gone() -> bool:
        try:
            os.killpg(proc.pid, 0)
            return False
        except ProcessLookupError:
            return True

    try:
        wait_until(group_gone, 15, "the killed runner's evaluation processes to exit")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    n_log_before = len(read_log(log))

    resumed = subprocess.run(tuner_cmd("run", str(study), "--storage", url, "--quiet"),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = stored_trials(url, "kill-resume")
    numbers = [t.number for t in after]
    assert sorted(numbers) == list(range(40)), "budget reached, no duplicate trial numbers"
    for t in after:
        if t.number in before:
            assert (t.params, t.values, t.user_attrs["status"]) == before[t.number]
    # configs stored before the kill are served from the cache after the resume
    stored_before = {(p["x"], p["y"], p["mode"]) for p, _, s in before.values() if s == "ok"}
    evaluated_after = [config_of(r) for r in read_log(log)[n_log_before:]]
    assert not stored_before & set(evaluated_after), "a stored result was measured again"
    assert evaluated_before, "the evaluation log works"
    for t in after:
        assert t.user_attrs["status"] in ("ok", "infeasible")


def test_interrupted_run_exits_130_marks_the_study_and_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'int.db'}"
    study = tmp_path / "study.toml"
    study.write_text(toy_study_toml("interrupt", trials=24, options={"sleep_s": 0.3}))
    proc = subprocess.Popen(tuner_cmd("run", str(study), "--storage", url, "--quiet"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    try:
        wait_until(lambda: _count(url, "interrupt") >= 5, 120, "5 stored trials")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    import optuna

    storage = optuna.storages.RDBStorage(url)
    sid = storage.get_study_id_from_name("interrupt")
    assert storage.get_study_user_attrs(sid)["tuner.state"] == "interrupted"
    kept = len(storage.get_all_trials(sid))
    storage.engine.dispose()
    assert 5 <= kept < 24
    done = subprocess.run(tuner_cmd("run", str(study), "--storage", url, "--quiet"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(t.number for t in stored_trials(url, "interrupt")) == list(range(24))


def _count(url: str, name: str) -> int:
    try:
        return len(stored_trials(url, name))
    except Exception:
        return 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

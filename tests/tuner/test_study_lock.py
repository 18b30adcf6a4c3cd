"""One writer per study: a second ``tuner run`` of a running study is refused; a dead runner's
lock is taken over; runs of different studies in one database do not block each other."""

from __future__ import annotations

import socket
import subprocess
import time

import sqlalchemy as sa

from tuner._errors import BadInput
from tuner._study_lock import LOCKS, StudyLock, create_table, holder, live_holder
from tuner.benchmarks.reliability import (
    kill_group,
    spawn,
    stored_trials,
    toy_study_toml,
    tuner_cmd,
    wait_until,
)


def _engine(tmp_path):
    return sa.create_engine(f"sqlite:///{tmp_path / 'lock.db'}")


def test_a_live_holder_is_refused_and_a_released_lock_is_free(tmp_path):
    engine = _engine(tmp_path)
    with StudyLock(engine, "s"):
        assert live_holder(engine, "s") is not None
        try:
            StudyLock(engine, "s").acquire()
        except BadInput as exc:
            assert "'s' is being run by process" in str(exc) and "one run per study" in str(exc)
        else:
            raise AssertionError("a second holder was let in")
        with StudyLock(engine, "other"):  # another study: not blocked
            pass
    assert holder(engine, "s") is None


def test_a_dead_holder_does_not_hold_the_study_forever(tmp_path):
    engine = _engine(tmp_path)
    create_table(engine)
    now = time.time()
    with engine.begin() as conn:
        # a runner on this host whose process is gone (a pid that cannot exist)
        conn.execute(LOCKS.insert().values(study_name="gone", holder="x",
                                           host=socket.gethostname(), pid=2**22 + 7,
                                           acquired=now, heartbeat=now))
        # a runner on another machine whose heartbeat stopped two TTLs ago
        conn.execute(LOCKS.insert().values(study_name="silent", holder="y", host="elsewhere",
                                           pid=1, acquired=now - 500, heartbeat=now - 120))
        # a runner on another machine that is alive
        conn.execute(LOCKS.insert().values(study_name="busy", holder="z", host="elsewhere",
                                           pid=1, acquired=now, heartbeat=now))
    for name in ("gone", "silent"):
        lock = StudyLock(engine, name)
        lock.acquire()
        assert holder(engine, name).holder == lock.me
        lock.release()
    try:
        StudyLock(engine, "busy").acquire()
    except BadInput as exc:
        assert "process 1 on elsewhere" in str(exc)
    else:
        raise AssertionError("took a live holder's lock")


def test_a_holder_whose_lock_was_taken_over_stops(tmp_path):
    engine = _engine(tmp_path)
    lock = StudyLock(engine, "s", ttl_s=0.2)
    lock.acquire()
    try:
        with engine.begin() as conn:  # another run took it over while this one was suspended
            conn.execute(LOCKS.update().values(holder="someone-else"))
        wait_until(lambda: lock.lost, 10, "the heartbeat to notice")
    finally:
        lock.release()


def test_second_run_of_a_running_study_is_refused_and_a_killed_one_is_replaced(tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    study = tmp_path / "s.toml"
    study.write_text(toy_study_toml("shared", trials=400, options={"sleep_s": 0.2}))
    other = tmp_path / "o.toml"
    other.write_text(toy_study_toml("other", trials=6))
    first = spawn(tuner_cmd("run", str(study), "--storage", url, "--quiet"),
                  tmp_path / "first.log")
    try:
        wait_until(lambda: len(_trials(url, "shared")) >= 2, 120, "the first run's trials")
        second = subprocess.run(tuner_cmd("run", str(study), "--storage", url, "--quiet"),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "'shared' is being run by process" in lines[0], lines
        # a run of another study in the same database works meanwhile
        side = subprocess.run(tuner_cmd("run", str(other), "--storage", url, "--quiet"),
                              capture_output=True, text=True, timeout=300)
        assert side.returncode == 0, side.stderr
        assert len(_trials(url, "other")) == 6
    finally:
        kill_group(first)
        first.wait(timeout=30)
    # the killed runner holds nothing: a new run resumes at once, numbers stay unique
    third = subprocess.run(tuner_cmd("run", str(study), "--storage", url, "--quiet",
                                     "--trials", str(len(_trials(url, "shared")) + 3)),
                           capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    numbers = [t.number for t in _trials(url, "shared")]
    assert sorted(numbers) == list(range(len(numbers)))


def _trials(url: str, name: str) -> list:
    try:
        return stored_trials(url, name)
    except Exception:
        return []


def test_a_worker_does_not_join_a_study_that_tuner_run_is_writing(tmp_path):
    import tomllib

    from tuner.spec import parse_spec
    from tuner.worker import Worker

    url = f"sqlite:///{tmp_path / 'w.db'}"
    spec = parse_spec(tomllib.loads(toy_study_toml("solo", trials=5)))
    worker = Worker(spec, url, heartbeat_s=1, progress=False)
    with StudyLock(worker.rdb.engine, "solo"):  # what a live `tuner run` holds
        try:
            worker.run()
        except BadInput as exc:
            assert "'solo' is being run by tuner run" in str(exc)
        else:
            raise AssertionError("the worker wrote beside tuner run")

"""Fleet mechanics on an SQLite file: budget lock, census, claims, stale-trial reaper, retries.

The same code runs against PostgreSQL in ``tests/distributed``; these tests pin each piece on
its own, quickly and without a server. No test waits on wall-clock staleness: old heartbeats
are written into the table directly.
"""

from __future__ import annotations

import threading
import time
import warnings
from datetime import timedelta

import optuna
import pytest
import sqlalchemy as sa
from optuna.distributions import IntDistribution
from optuna.storages._rdb import models
from optuna.trial import TrialState

from tuner import _fleet, _record
from tuner._errors import TunerError
from tuner._evaluator import EvalResult
from tuner.spec import ObjectiveSpec
from tuner.storage import open_rdb

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
_H = models.TrialHeartbeatModel.__table__
DIST = {"x": IntDistribution(0, 20)}


@pytest.fixture
def db(tmp_path):
    """(rdb, study) on a fresh SQLite file with the claims table."""
    with warnings.catch_warnings():  # Optuna's heartbeat options are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = open_rdb(f"sqlite:///{tmp_path / 'fleet.db'}", heartbeat_interval=1,
                       grace_period=2)
    _fleet.create_claims_table(rdb.engine)
    study = optuna.create_study(storage=rdb, study_name="fleet")
    yield rdb, study
    rdb.engine.dispose()


def _age_heartbeat(rdb, trial_id, seconds):
    """Make a trial's last heartbeat ``seconds`` old (database time)."""
    rdb.record_heartbeat(trial_id)
    with rdb.engine.begin() as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar().replace(tzinfo=None)
        conn.execute(_H.update().where(_H.c.trial_id == trial_id)
                     .values(heartbeat=now - timedelta(seconds=seconds)))


# -- budget lock ------------------------------------------------------------------------------
def test_budget_lock_serializes_holders(db):
    rdb, study = db
    first = _fleet.BudgetLock(rdb.engine, study._study_id)
    assert first.effective and first.dialect == "sqlite"
    events: list[str] = []

    def second() -> None:
        with _fleet.BudgetLock(rdb.engine, study._study_id):
            events.append("second in")

    with first:
        events.append("first in")
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)  # the second holder waits all this time
        events.append("first out")
    t.join(timeout=10)
    assert events == ["first in", "first out", "second in"]


def test_budget_lock_is_reentrant_across_uses(db):
    rdb, study = db
    lock = _fleet.BudgetLock(rdb.engine, study._study_id)
    for _ in range(3):  # one object, entered again and again by the worker loop
        with lock:
            pass


# -- census -----------------------------------------------------------------------------------
def test_census_counts_what_the_budget_counts(db):
    rdb, study = db
    done = study.ask(DIST)
    study.tell(done, 1.0)
    failed = study.ask(DIST)  # an evaluation failure: finished for the budget
    failed.set_user_attr(_record.STATUS, "failed")
    study.tell(failed, state=TrialState.FAIL)
    crashed = study.ask(DIST)  # failed by Optuna itself, no record: not counted
    study.tell(crashed, state=TrialState.FAIL)
    study.ask(DIST)  # running
    study.enqueue_trial({"x": 3})  # waiting
    c = _fleet.census(rdb.engine, study._study_id)
    assert (c.finished, c.running, c.waiting) == (2, 1, 1)


def test_census_leaves_requeued_failures_out(db):
    rdb, study = db
    lost = study.ask(DIST)
    rdb.record_heartbeat(lost._trial_id)
    assert _fleet.fail_and_requeue(rdb, study, lost._trial_id, "test: lost") is not None
    c = _fleet.census(rdb.engine, study._study_id)
    assert (c.finished, c.running, c.waiting) == (0, 0, 1)


# -- claims -----------------------------------------------------------------------------------
def test_claims_one_holder_per_config(db):
    rdb, study = db
    sid = study._study_id
    a, b = study.ask(DIST), study.ask(DIST)
    assert _fleet.claim(rdb.engine, "k1", sid, a._trial_id, "w-a")
    assert _fleet.claim(rdb.engine, "k1", sid, a._trial_id, "w-a"), "own claim again: ours"
    assert not _fleet.claim(rdb.engine, "k1", sid, b._trial_id, "w-b"), "held by a live trial"
    assert _fleet.claim(rdb.engine, "k2", sid, b._trial_id, "w-b"), "another config is free"
    _fleet.release(rdb.engine, "k1", a._trial_id)
    assert _fleet.claim(rdb.engine, "k1", sid, b._trial_id, "w-b"), "released: free again"
    with rdb.engine.connect() as conn:
        rows = conn.execute(sa.select(_fleet.CLAIMS.c.key, _fleet.CLAIMS.c.trial_id)).all()
    assert sorted(rows) == [("k1", b._trial_id), ("k2", b._trial_id)]


def test_claim_of_a_finished_trial_is_taken_over(db):
    rdb, study = db
    sid = study._study_id
    dead, mine = study.ask(DIST), study.ask(DIST)
    assert _fleet.claim(rdb.engine, "k", sid, dead._trial_id, "gone")
    study.tell(dead, state=TrialState.FAIL)  # ended without storing a result
    assert _fleet.claim(rdb.engine, "k", sid, mine._trial_id, "me")
    with rdb.engine.connect() as conn:
        holder = conn.execute(sa.select(_fleet.CLAIMS.c.trial_id)).scalar()
    assert holder == mine._trial_id


def test_release_only_drops_the_callers_claim(db):
    rdb, study = db
    a, b = study.ask(DIST), study.ask(DIST)
    assert _fleet.claim(rdb.engine, "k", study._study_id, a._trial_id, "w")
    _fleet.release(rdb.engine, "k", b._trial_id)  # not b's claim: stays
    assert not _fleet.claim(rdb.engine, "k", study._study_id, b._trial_id, "w")


# -- stale trials and the reaper --------------------------------------------------------------
def test_stale_trials_tells_lost_workers_apart(db):
    rdb, study = db
    sid = study._study_id
    alive, lost, silent, orphan = (study.ask(DIST) for _ in range(4))
    rdb.record_heartbeat(alive._trial_id)
    _age_heartbeat(rdb, lost._trial_id, 3600)
    rdb.record_heartbeat(orphan._trial_id)
    stale = dict(_fleet.stale_trials(rdb.engine, sid, grace_s=5, lock_effective=True,
                                     orphans=[orphan._trial_id]))
    assert alive._trial_id not in stale
    assert "no heartbeat for" in stale[lost._trial_id] and "grace 5 s" in stale[lost._trial_id]
    assert "before the first heartbeat" in stale[silent._trial_id]
    assert "lost the storage" in stale[orphan._trial_id]
    # without an effective lock a trial may sit between ask and first heartbeat: not stale yet
    unlocked = dict(_fleet.stale_trials(rdb.engine, sid, grace_s=5, lock_effective=False))
    assert silent._trial_id not in unlocked and lost._trial_id in unlocked


def test_fail_and_requeue_marks_and_queues_a_copy(db):
    rdb, study = db
    lost = study.ask(DIST)
    assert _fleet.claim(rdb.engine, "k", study._study_id, lost._trial_id, "gone")
    number, reason = _fleet.fail_and_requeue(rdb, study, lost._trial_id, "test: lost")
    assert number == lost.number and reason.endswith("re-queued as a new trial")
    frozen = rdb.get_trial(lost._trial_id)
    assert frozen.state == TrialState.FAIL
    ua = frozen.user_attrs
    assert (ua["status"], ua["requeued"], ua["feasible"], ua["cached"]) == (
        "failed", True, False, False) and "test: lost" in ua["reason"]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].params == lost.params
    assert waiting[0].system_attrs["retry_history"] == [lost.number]
    with rdb.engine.connect() as conn:  # its claim went with it
        assert conn.execute(sa.select(sa.func.count()).select_from(_fleet.CLAIMS)).scalar() == 0
    assert _fleet.fail_and_requeue(rdb, study, lost._trial_id, "again") is None


def test_requeue_gives_up_after_max_retries(db):
    rdb, study = db
    for attempt in range(_fleet.MAX_RETRIES + 1):
        trial = study.ask(DIST)
        if attempt:
            history = rdb.get_trial(trial._trial_id).system_attrs.get("retry_history")
            assert len(history) == attempt, "the re-queued copy was asked"
        _, reason = _fleet.fail_and_requeue(rdb, study, trial._trial_id, "lost")
    assert f"already retried {_fleet.MAX_RETRIES} times" in reason
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert rdb.get_trial(trial._trial_id).user_attrs["requeued"] is False


# -- heartbeat, buffered tell, retries ----------------------------------------------------------
def test_heartbeat_thread_records_beats(db):
    rdb, study = db
    trial = study.ask(DIST)
    with _fleet.Heartbeat(rdb, trial._trial_id, interval=0.05):
        deadline = time.monotonic() + 5
        while not _beat(rdb, trial._trial_id):
            assert time.monotonic() < deadline, "no heartbeat recorded"
            time.sleep(0.02)


def _beat(rdb, trial_id):
    with rdb.engine.connect() as conn:
        return conn.execute(sa.select(_H.c.heartbeat).where(_H.c.trial_id == trial_id)).scalar()


def test_buffered_tell_writes_the_record(db):
    rdb, study = db
    trial = study.ask(DIST)
    frozen = _record.record(
        _fleet.BufferedStudy(study, rdb.engine), _fleet.BufferedTrial(trial), {"x": 1},
        EvalResult.ok({"score": 2.0}), [ObjectiveSpec(metric="score", direction="minimize")],
        [], False, 0.5)
    assert frozen.state == TrialState.COMPLETE and frozen.values == [2.0]
    assert set(frozen.user_attrs) == set(_record.RECORD_KEYS)
    # both of Optuna's forms are stored; each constraint read once
    assert _record.constraint_values(frozen.system_attrs) == {"feasible": 0.0}
    assert frozen.system_attrs["constraints"] == [0.0]
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        _fleet.BufferedStudy(study, rdb.engine).tell(_fleet.BufferedTrial(trial), [1.0])


def test_retrying_waits_through_transient_errors_only():
    logs: list[str] = []
    naps: list[float] = []
    retry = _fleet.Retrying(logs.append, "[w] ", patience_s=60, sleep=naps.append)
    calls = iter([sa.exc.OperationalError("SELECT 1", {}, Exception("server closed "
                                                                      "postgresql://u:pw@h/db")),
                  ConnectionResetError("reset"), "ok"])

    def flaky() -> str:
        out = next(calls)
        if isinstance(out, BaseException):
            raise out
        return out

    assert retry(flaky) == "ok"
    assert naps == [0.5, 1.0]
    assert logs[0].startswith("[w] storage unavailable") and "pw" not in logs[0]
    assert logs[1].startswith("[w] storage back after")
    with pytest.raises(ValueError):
        retry(lambda: (_ for _ in ()).throw(ValueError("a bug")))
    assert naps == [0.5, 1.0], "a bug is not retried"


def test_retrying_gives_up_after_its_patience():
    retry = _fleet.Retrying(lambda s: None, patience_s=0.0, sleep=lambda s: time.sleep(0.01))

    def down() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(TunerError, match="storage unreachable"):
        retry(down)


def test_transient_errors_are_told_apart_from_bugs():
    wrapped = optuna.exceptions.StorageInternalError("commit failed")
    wrapped.__cause__ = sa.exc.OperationalError("SELECT 1", {}, Exception("gone"))
    assert _fleet.is_transient(wrapped) and _fleet.is_transient(TimeoutError())
    assert not _fleet.is_transient(sa.exc.IntegrityError("INSERT", {}, Exception("dup")))
    assert _fleet.short_error(wrapped).startswith("Exception: gone")

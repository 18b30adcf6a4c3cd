import time

from tuner._evaluator import Status
from tuner._pool import EvalPool


def _poll_until_result(pool: EvalPool, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pool.poll(0.05)
        if out:
            return out
    raise AssertionError("no result")


def test_a_worker_that_dies_right_after_ready_fails_its_task_only():
    """"ready" and the worker's death are read in the same poll: the task fails with the
    reason, and the next task runs on a fresh worker."""
    pool = EvalPool("tuner.testing.toys:FaultyEvaluator", {"mode": "exit", "trigger_x": 3}, 1,
                    timeout_s=30)
    try:
        pool.submit("dies", {"x": 3, "y": 1, "mode": "a"})
        time.sleep(2.0)  # the worker starts, says ready, takes the task and exits, unpolled
        [(task, result, _)] = _poll_until_result(pool)
        assert task == "dies" and result.status == Status.FAILED
        assert "exited with code 3" in result.reason
        pool.submit("lives", {"x": 4, "y": 1, "mode": "a"})
        [(task, result, _)] = _poll_until_result(pool)
        assert task == "lives" and result.status == Status.OK
    finally:
        pool.close()

"""Evaluation worker processes with a hard per-trial timeout enforced from outside.

Each worker owns one evaluator instance and one pipe. A worker that runs past its deadline is
killed and replaced; one that dies (crash, ``os._exit``, the kernel's OOM killer) fails only
its own trial. An address-space limit turns unbounded allocation into a ``MemoryError``.
"""

from __future__ import annotations

import json
import multiprocessing.connection as mpc
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuner._errors import TunerError
from tuner._evaluator import EvalResult, Status


def _worker_main(conn: Any, evaluator_name: str, options: dict[str, Any],
                 memory_limit_mib: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
    _die_with_parent()
    if memory_limit_mib:
        import resource

        limit = memory_limit_mib * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from tuner.registry import make_evaluator

    try:
        evaluator = make_evaluator(evaluator_name, options)
        evaluator.setup()
    except BaseException as exc:  # report, then exit: every trial would fail the same way
        conn.send(("setup_error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        task_id, config = msg
        t0 = time.perf_counter()
        try:
            result = evaluator.evaluate(config)
            if not isinstance(result, EvalResult):
                result = EvalResult.failed(f"evaluator returned {type(result).__name__}, "
                                           "not EvalResult")
        except MemoryError:
            result = EvalResult.failed(f"out of memory (worker limit {memory_limit_mib} MiB)")
        except Exception as exc:
            tb = traceback.format_exc(limit=8)
            result = EvalResult(Status.FAILED, {}, f"{type(exc).__name__}: {exc}",
                                {"traceback": tb})
        secs = time.perf_counter() - t0
        try:
            conn.send((task_id, result.to_json(artifacts=True), secs))
        except (BrokenPipeError, ConnectionResetError):
            break
        except Exception as exc:  # e.g. unpicklable artifacts
            conn.send((task_id, EvalResult.failed(f"result not serializable: {exc}").to_json(),
                       secs))
    try:
        evaluator.teardown()
    except Exception:
        pass


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker if the runner dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class _Worker:
    proc: subprocess.Popen
    conn: Any
    task: Any = None
    started: float = 0.0
    ready: bool = False


class EvalPool:
    """``submit`` configs, ``poll`` finished (task_id, EvalResult, seconds) tuples."""

    def __init__(self, evaluator_name: str, options: dict[str, Any], workers: int,
                 timeout_s: float, memory_limit_mib: int | None = None) -> None:
        self.evaluator_name, self.options = evaluator_name, dict(options)
        self.timeout_s, self.memory_limit_mib = timeout_s, memory_limit_mib
        self._workers = [self._spawn() for _ in range(workers)]
        self._finished: list[tuple[Any, EvalResult, float]] = []
        self._startup_deaths = 0

    def _spawn(self) -> _Worker:
        # a fresh interpreter per worker (not fork/forkserver): nothing of the caller's
        # __main__, threads or open connections leaks into evaluations
        parent, child = socket.socketpair()
        args = json.dumps([self.evaluator_name, self.options, self.memory_limit_mib])
        proc = subprocess.Popen([sys.executable, "-m", "tuner._pool", str(child.fileno()), args],
                                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, start_new_session=True)
        child.close()
        return _Worker(proc, mpc.Connection(parent.detach()))

    def idle(self) -> int:
        return sum(w.task is None for w in self._workers)

    def busy(self) -> int:
        return len(self._workers) - self.idle()

    def submit(self, task_id: Any, config: dict[str, Any]) -> None:
        w = next(w for w in self._workers if w.task is None)
        w.task, w.started = task_id, time.monotonic()
        try:
            w.conn.send((task_id, config))
        except (BrokenPipeError, OSError):
            self._replace(w, EvalResult.failed(self._death_reason(w)))

    def _death_reason(self, w: _Worker) -> str:
        try:
            code = w.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            sig = signal.Signals(-code).name
            hint = " (likely out of memory)" if sig == "SIGKILL" else ""
            return f"evaluation process killed by {sig}{hint}"
        return f"evaluation process exited with code {code}"

    def _replace(self, w: _Worker, result: EvalResult) -> None:
        if not w.ready:  # died before its evaluator was built: respawning will not help
            self._startup_deaths += 1
            if self._startup_deaths >= 3:
                raise TunerError(f"evaluation workers cannot start ({result.reason})")
        elapsed = time.monotonic() - w.started
        self._finished.append((w.task, result, elapsed))
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.wait(timeout=5)
        w.conn.close()
        self._workers[self._workers.index(w)] = self._spawn()

    def poll(self, wait_s: float = 0.05) -> list[tuple[Any, EvalResult, float]]:
        busy = [w for w in self._workers if w.task is not None]
        if busy and not self._finished:
            deadline = min(w.started for w in busy) + self.timeout_s
            # a dead worker's socket reads EOF, so waiting on the sockets also sees deaths
            mpc.wait([w.conn for w in busy],
                     timeout=max(0.0, min(wait_s, deadline - time.monotonic())))
        now = time.monotonic()
        for w in busy:
            if w.conn.poll():
                try:
                    msg = w.conn.recv()
                    if msg[0] == "ready":
                        w.ready = True
                        self._startup_deaths = 0
                        if not w.conn.poll(0):
                            continue
                        msg = w.conn.recv()  # it may have died on the task meanwhile
                except (EOFError, OSError):
                    self._replace(w, EvalResult.failed(self._death_reason(w)))
                    continue
                if msg[0] == "setup_error":
                    raise TunerError(f"evaluator setup failed: {msg[1]}")
                task_id, payload, secs = msg
                self._finished.append((task_id, EvalResult.from_json(payload), secs))
                w.task = None
            elif w.proc.poll() is not None:
                self._replace(w, EvalResult.failed(self._death_reason(w)))
            elif now - w.started > self.timeout_s:
                self._replace(w, EvalResult.failed(
                    f"timed out after {self.timeout_s:g} s (killed by the runner)"))
        out, self._finished = self._finished, []
        return out

    def evaluate_one(self, config: dict[str, Any], task_id: Any = "one", wait_s: float = 0.2,
                     check: Callable[[], None] | None = None) -> tuple[EvalResult, float]:
        """Evaluate one config on an idle worker and wait for it: (result, seconds).

        ``check`` runs between polls; it raises to stop waiting (a signal, a deadline).
        """
        self.submit(task_id, config)
        while True:
            if check is not None:
                check()
            for _task, result, secs in self.poll(wait_s):
                return result, secs

    def close(self) -> None:
        for w in self._workers:
            try:
                if w.task is None:
                    w.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 2
        for w in self._workers:
            try:
                w.proc.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(timeout=2)
            w.conn.close()


if __name__ == "__main__":  # a worker: python -m tuner._pool FD '[evaluator, options, mib]'
    _name, _options, _mib = json.loads(sys.argv[2])
    _worker_main(mpc.Connection(int(sys.argv[1])), _name, _options, _mib)

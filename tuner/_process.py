"""Child processes of real evaluators: a benchmark command, or a local HTTP server.

Each child gets its own process group and a parent-death signal, so neither a crash of the
child nor of the evaluating process leaves a process behind; what a failure reports is the
exit code or the signal that ended the child and the tail of its output.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _own_group_dying_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the caller's stop() still applies
        pass


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # nothing left in the group
        pass


def describe_exit(code: int | None) -> str:
    """``exited with code 1`` / ``killed by SIGSEGV (signal 11)`` / ``still running``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by {name} (signal {-code})"
    return f"exited with code {code}"


def tail(text: str, chars: int = 600) -> str:
    text = text.strip()
    return ("…" + text[-chars:]) if len(text) > chars else text


@dataclass(frozen=True)
class CommandRun:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run_command(argv: Sequence[str], stdin: str | None = None, *, timeout_s: float,
                cwd: str | None = None, env: dict[str, str] | None = None) -> CommandRun:
    """Run ``argv`` to completion or ``timeout_s``; its whole process group is killed after
    (a benchmark that leaves workers behind does not keep them). OSError if it cannot start."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                            preexec_fn=_own_group_dying_with_parent)
    try:
        out, err = proc.communicate(stdin, timeout=timeout_s)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        code = None
    finally:
        kill_group(proc.pid)
    return CommandRun(code, out, err)


class ServerError(RuntimeError):
    """The server did not start, died, or did not answer; the message says which and why."""


class ServerProcess:
    """``with ServerProcess(argv, health_url, log_path) as srv:`` starts and waits until
    ``health_url`` answers 200; leaving the block stops the whole process group."""

    def __init__(self, argv: Sequence[str], health_url: str, log_path: str | Path,
                 *, env: dict[str, str] | None = None, name: str | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.health_url = health_url
        self.log_path = Path(log_path)
        self.env = env
        self.name = name or Path(self.argv[0]).name
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout_s: float = 120.0) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            try:
                self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=self.env,
                                             preexec_fn=_own_group_dying_with_parent)
            except OSError as exc:
                raise ServerError(f"cannot start {self.name} ({self.argv[0]}): "
                                  f"{exc.strerror or exc}") from None
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} {self.death('while starting')}")
            if self._healthy():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} was not healthy within {timeout_s:g} s"
                                  f"{self.log_note()}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died_within(self, seconds: float) -> bool:
        """True once the child has exited (waiting up to ``seconds``: a crashing server
        closes its connections a moment before its exit status is known)."""
        if self.proc is None:
            return False
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace_s``; safe to call twice.

        The group is signalled even when its leader has already died: an engine that
        crashed may leave its own workers running."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is not None:
            kill_group(proc.pid, signal.SIGKILL)
            return
        kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- diagnostics ----------------------------------------------------------------------
    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_bytes()[-20000:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def log_note(self) -> str:
        """``; last lines of LOG:`` and the tail, or nothing when the log is empty."""
        tail = self.log_tail()
        return f"; last lines of {self.log_path}:\n{tail}" if tail else ""

    def death(self, when: str = "") -> str:
        """How the child ended and the tail of its log (for an error message)."""
        code = self.proc.poll() if self.proc is not None else None
        return " ".join(filter(None, (describe_exit(code), when))) + self.log_note()


__all__ = ["CommandRun", "ServerError", "ServerProcess", "describe_exit", "free_port",
           "kill_group", "run_command", "tail"]

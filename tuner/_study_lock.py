"""One writer per study: a lock row in the database that a dead runner does not hold forever.

``tuner run`` is a study's only writer (its trial numbers and its sampler's view assume it),
so a second ``tuner run`` of the same study is refused while the first is alive, whatever
machine it runs on; runs of other studies in the same database are not affected. The lock is
a row of ``tuner_study_locks`` (study name, holder, host, pid, heartbeat):

* taking it is an INSERT, which the primary key makes atomic on every database;
* the holder refreshes its heartbeat from a thread every ``ttl_s / 4`` seconds;
* a row whose holder is gone is taken over: at once when it is on this host and its process
  no longer exists (a killed runner), else when its heartbeat is older than ``ttl_s`` (an
  UPDATE that names the old heartbeat, so two takers cannot both win);
* a holder that finds its row taken over (it was suspended past the TTL) stops at the next
  trial (``lost``) instead of writing beside the new holder.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tuner._errors import BadInput

#: a holder whose heartbeat is older than this (seconds) is presumed dead
DEFAULT_TTL_S = 60.0

_meta = sa.MetaData()
LOCKS = sa.Table(
    "tuner_study_locks", _meta,
    sa.Column("study_name", sa.String(512), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("host", sa.String(160), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired", sa.Float, nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
)


def create_table(engine: sa.Engine) -> None:
    from tuner.storage import create_tables

    create_tables(_meta, engine)


@dataclass(frozen=True)
class Holder:
    """Who holds a study's lock."""

    holder: str
    host: str
    pid: int
    acquired: float
    heartbeat: float

    def alive(self, ttl_s: float = DEFAULT_TTL_S, now: float | None = None) -> bool:
        """A fresh heartbeat, and on this host a process that still exists."""
        if (now or time.time()) - self.heartbeat > ttl_s:
            return False
        return self.host != socket.gethostname() or _pid_alive(self.pid)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.acquired))
        return f"process {self.pid} on {self.host} (since {since})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def holder(engine: sa.Engine, study_name: str) -> Holder | None:
    """The current holder of ``study_name``'s lock (alive or not), or None."""
    q = sa.select(LOCKS.c.holder, LOCKS.c.host, LOCKS.c.pid, LOCKS.c.acquired,
                  LOCKS.c.heartbeat).where(LOCKS.c.study_name == study_name)
    try:
        with engine.connect() as conn:
            row = conn.execute(q).first()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # no lock table yet
        return None
    return Holder(*row) if row is not None else None


def live_holder(engine: sa.Engine, study_name: str, ttl_s: float = DEFAULT_TTL_S
                ) -> Holder | None:
    h = holder(engine, study_name)
    return h if h is not None and h.alive(ttl_s) else None


class StudyLock:
    """Hold ``study_name``'s writer lock while the ``with`` block runs (``BadInput`` when a
    live runner holds it)."""

    def __init__(self, engine: sa.Engine, study_name: str, ttl_s: float = DEFAULT_TTL_S,
                 what: str = "tuner run") -> None:
        self.engine, self.study_name, self.ttl_s, self.what = engine, study_name, ttl_s, what
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.me = f"{self.host}:{self.pid}:{id(self):x}"
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        create_table(self.engine)
        for _ in range(5):
            now = time.time()
            row = {"study_name": self.study_name, "holder": self.me, "host": self.host,
                   "pid": self.pid, "acquired": now, "heartbeat": now}
            try:
                with self.engine.begin() as conn:
                    conn.execute(LOCKS.insert().values(**row))
                break
            except sa.exc.IntegrityError:
                pass
            current = holder(self.engine, self.study_name)
            if current is None:
                continue  # released meanwhile
            if current.alive(self.ttl_s):
                raise BadInput("study", f"{self.study_name!r} is being run by "
                               f"{current.describe()}; one run per study at a time: wait for "
                               "it to finish, stop it, or use another study name")
            with self.engine.begin() as conn:  # take over a dead holder's row
                taken = conn.execute(LOCKS.update().where(
                    LOCKS.c.study_name == self.study_name, LOCKS.c.holder == current.holder,
                    LOCKS.c.heartbeat == current.heartbeat).values(**row)).rowcount
            if taken == 1:
                break
        else:
            raise BadInput("study", f"{self.study_name!r}: could not take the study lock "
                           "(another run keeps taking it)")
        self._thread = threading.Thread(target=self._beat, name="tuner-study-lock",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                with self.engine.begin() as conn:
                    n = conn.execute(LOCKS.update().where(
                        LOCKS.c.study_name == self.study_name, LOCKS.c.holder == self.me
                    ).values(heartbeat=time.time())).rowcount
                if n == 0:
                    self.lost = True
                    return
            except Exception:  # storage busy or down: the main loop meets it too
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            with self.engine.begin() as conn:
                conn.execute(LOCKS.delete().where(LOCKS.c.study_name == self.study_name,
                                                  LOCKS.c.holder == self.me))
        except Exception:  # storage gone: the row goes stale and is taken over
            pass

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


__all__ = ["DEFAULT_TTL_S", "Holder", "LOCKS", "StudyLock", "create_table", "holder",
           "live_holder"]

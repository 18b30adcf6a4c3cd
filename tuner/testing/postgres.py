"""A throwaway PostgreSQL server for tests and benchmarks: a fresh cluster on 127.0.0.1.

``initdb`` in a temporary directory, password authentication for the ``tuner`` role, a free
TCP port on loopback and no Unix socket, then ``pg_ctl`` to start, stop (any shutdown mode,
``immediate`` included) and restart it. PostgreSQL refuses to run as root, so under root the
server runs as an unprivileged system user: ``$TUNER_PG_OS_USER``, else ``postgres`` (created
by Debian's ``postgresql`` package), else ``tunerpg``.

Durability settings are relaxed (``fsync=off``): a killed server process keeps everything
the operating system has received, which is what crash-and-restart tests exercise; only a
power cut would lose data.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROLE = "tuner"


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or no way to run them here (the message says why)."""


def find_bindir() -> Path | None:
    """``$TUNER_PG_BINDIR``, the directory of ``pg_ctl`` on PATH, or Debian's newest version."""
    env = os.environ.get("TUNER_PG_BINDIR")
    candidates = [env] if env else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for c in candidates:
        if c and all((Path(c) / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return Path(c)
    return None


def _os_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as (None: we are not root)."""
    if os.geteuid() != 0:
        return None
    names = [os.environ["TUNER_PG_OS_USER"]] if os.environ.get("TUNER_PG_OS_USER") else [
        "postgres", "tunerpg"]
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PgUnavailable("running as root and no unprivileged user to run PostgreSQL as "
                        f"(tried {', '.join(names)}); install Debian's postgresql package or "
                        "create one: useradd --system tunerpg")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster in a temporary directory; use as a context manager."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        if self.bindir is None:
            raise PgUnavailable("PostgreSQL server binaries not found (apt-get install "
                                "postgresql, or set TUNER_PG_BINDIR)")
        self.user = _os_user()
        self.password = secrets.token_urlsafe(16)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tuner-pg-", dir="/tmp" if self.user
                                          else None))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.running = False
        if self.user:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.user:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", ROLE, f"--pwfile={pwfile}",
                  "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--locale=C")
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    "unix_socket_directories = ''\nfsync = off\nfull_page_writes = off\n"
                    "max_connections = 200\nshared_buffers = 32MB\n")

    # -- processes ------------------------------------------------------------------------
    def _run(self, exe: str, *args: str, check: bool = True, timeout: float = 120
             ) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / exe), *args]
        if self.user:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            cmd = [runuser, "-u", self.user.pw_name, "--", *cmd]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise PgUnavailable(f"{exe} failed ({proc.returncode}): " + " | ".join(tail))
        return proc

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "start")
        self.running = True
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clean), or ``immediate`` (like a crash: recovery runs on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def wait_ready(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(**self._params("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- databases ------------------------------------------------------------------------
    def _params(self, db: str) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": ROLE,
                "password": self.password, "dbname": db}

    def url(self, db: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) of one database, password included."""
        return f"postgresql+psycopg://{ROLE}:{self.password}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(**self._params("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["PgServer", "PgUnavailable", "find_bindir", "free_port"]


def pg_server_fixture():
    """A module-scoped pytest fixture: ``pg = pg_server_fixture()`` in a test module."""
    import pytest

    @pytest.fixture(scope="module")
    def pg():
        try:
            server = PgServer()
        except PgUnavailable as exc:
            pytest.skip(f"no PostgreSQL server: {exc}")
        with server:
            yield server

    return pg

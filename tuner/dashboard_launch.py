"""``tuner dashboard``: start the Streamlit app on one storage, bound to localhost by default."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuner._errors import BadInput, MissingExtra

#: the app reads its storage URL from here (not argv: a password would show in ``ps``)
ENV_STORAGE = "TUNER_DASHBOARD_STORAGE"


def app_path() -> Path:
    from tuner import dashboard

    return Path(dashboard.__file__).resolve().parent / "app.py"


def command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``streamlit run`` command line (no telemetry, no file watcher, headless)."""
    return [sys.executable, "-m", "streamlit", "run", str(app_path()),
            "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--server.fileWatcherType", "none",
            "--server.runOnSave", "false", "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false", "--client.toolbarMode", "viewer"]


def environment(storage_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_STORAGE] = storage_url
    return env


def _check_port_free(host: str, port: int) -> None:
    """``BadInput`` when something already listens on ``host:port`` (said before Streamlit
    starts and fails with a page of its own output)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise BadInput("--port", f"{port} on {host} is in use ({exc.strerror}); stop what "
                           "listens there or give another --port") from None


def launch(storage_url: str | None, port: int, host: str = "127.0.0.1") -> int:
    """Run the dashboard until interrupted; returns the exit code.

    The storage is checked first (read-only), so a wrong URL is a one-line error rather
    than a page that fails to load.
    """
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise MissingExtra("streamlit", "dashboard") from None
    from tuner._readonly_storage import ReadOnlyStorage
    from tuner.storage import storage_url as default_url

    url = storage_url or default_url(None, create=False)
    if not 0 < port < 65536:
        raise BadInput("--port", f"{port} is not a TCP port (1-65535)")
    store = ReadOnlyStorage(url)  # a missing file or one that is not a storage: one line
    store.engine.dispose()
    _check_port_free(host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}: anyone who can reach it can read every study",
              file=sys.stderr)
    print(f"tuner dashboard: http://{host}:{port}  (storage {store.label}, read-only; "
          "Ctrl-C to stop)", file=sys.stderr)
    proc = subprocess.Popen(command(port, host), env=environment(url))

    def _stop(signum: int, _frame: Any) -> None:  # a killed launcher must not orphan the server
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the server too (same process group)
        try:
            return proc.wait(timeout=10) and 0
        except subprocess.TimeoutExpired:
            proc.kill()
            return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()

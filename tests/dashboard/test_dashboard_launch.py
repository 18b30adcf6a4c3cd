"""``tuner dashboard``: serves on localhost, refuses a bad storage, stops with its launcher."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tuner.benchmarks.synthetic_study import write_study


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tuner(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuner.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_missing_storage_is_a_one_line_error(tmp_path):
    proc = _tuner("dashboard", "--storage", f"sqlite:///{tmp_path / 'nope.db'}", "--port",
                  str(_free_port()))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no database file" in lines[0], err


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_serves_on_localhost_and_stops_with_the_launcher(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    write_study(url, "s", 20)
    port = _free_port()
    proc = _tuner("dashboard", "--storage", url, "--port", str(port), start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        # bound to 127.0.0.1 only: the port is not open on another local address
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.2", port)) != 0
        proc.send_signal(signal.SIGTERM)  # to the launcher only, not its process group
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("the Streamlit server outlived its launcher")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_busy_port_is_a_one_line_error(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    write_study(url, "s", 5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = _tuner("dashboard", "--storage", url, "--port", str(port))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"--port: {port} on 127.0.0.1 is in use" in lines[0], err


def test_a_file_that_is_not_a_storage_is_a_one_line_error(tmp_path):
    notdb = tmp_path / "notes.txt"
    notdb.write_text("these are notes, not a database\n" * 100)
    proc = _tuner("dashboard", "--storage", f"sqlite:///{notdb}", "--port", str(_free_port()))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "is not a database" in lines[0], err
    assert notdb.read_text().startswith("these are notes")

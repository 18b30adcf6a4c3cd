"""Fault injection: what the runner and the workers lose when things break (nothing, we claim).

Scenarios, each through the real process pool and real processes:

* ``evaluator-*``: an evaluator that raises, hangs past the trial timeout, kills its own
  process (``os._exit``) or allocates without bound under a memory limit
  (``tuner.testing.toys:FaultyEvaluator``, triggered on some configs only);
* ``runner-sigkill``: ``tuner run`` killed with SIGKILL mid-study, then resumed;
* ``workers-sigkill`` (PostgreSQL): 4 ``tuner worker`` processes on one study, one killed with
  SIGKILL (with its evaluation process) while a trial is running;
* ``postgres-restart`` (PostgreSQL): the database crashes (``pg_ctl stop -m immediate``) and
  restarts mid-study under 2 workers.

For each: trials run, faults injected, and trials lost, counted from the stored study (a
trial is lost when an evaluation that finished is missing from storage, when the study ends
short of its budget, or when a failure has no stored reason).

Run: ``python -m tuner.benchmarks.reliability [--quick] [--no-postgres] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuner._evaluator import EvalResult
from tuner.testing.toys import ToyEvaluator


class LoggedToyEvaluator(ToyEvaluator):
    """The toy problem, optionally slow, appending one JSON line per finished evaluation.

    Options: ``sleep_s`` (seconds per evaluation), ``log`` (file to append to; the line is
    one ``write`` on an O_APPEND descriptor, so concurrent processes never interleave),
    ``penalty`` (subtracted from ``score``: a regressed system under test).
    """

    name = "logged-toy"
    domains = ("toy",)

    def evaluate(self, config: Mapping[str, Any]) -> EvalResult:
        time.sleep(float(self.options.get("sleep_s", 0.0)))
        result = super().evaluate(config)
        penalty = float(self.options.get("penalty", 0.0))
        if penalty and result.status.value == "ok":
            result = EvalResult.ok({**result.metrics, "score": result.metrics["score"] - penalty})
        log = self.options.get("log")
        if log:
            line = json.dumps({"pid": os.getpid(), "x": config.get("x"), "y": config.get("y"),
                               "mode": config.get("mode"), "t": time.time()}) + "\n"
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        return result


# -- helpers shared with the tests ----------------------------------------------------------
def toy_study_toml(name: str, *, trials: int, evaluator: str =
                   "tuner.benchmarks.reliability:LoggedToyEvaluator",
                   options: Mapping[str, Any] | None = None, sampler: str = "tpe",
                   context: Mapping[str, Any] | None = None, timeout_s: float = 60,
                   memory_mib: int | None = None, params: str = "",
                   objectives: tuple[tuple[str, str], ...] = (("score", "maximize"),),
                   seed: int = 0) -> str:
    """A study file on the toy space (TOML text)."""
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        return repr(v)

    lines = [f'name = "{name}"', f"seed = {seed}", "[space]",
             'domain = "tuner.testing.toys:ToySpace"', "[space.context]"]
    lines += [f"{k} = {val(v)}" for k, v in (context or {}).items()]
    if params:
        lines.append(params.strip())
    lines += ["[evaluator]", f'name = "{evaluator}"', "[evaluator.options]"]
    lines += [f"{k} = {val(v)}" for k, v in (options or {}).items()]
    for metric, direction in objectives:
        lines += ["[[objectives]]", f'metric = "{metric}"', f'direction = "{direction}"']
    lines += ["[sampler]", f'name = "{sampler}"', "[budget]", f"trials = {trials}",
              f"trial_timeout_s = {timeout_s}"]
    if memory_mib:
        lines.append(f"memory_limit_mib = {memory_mib}")
    return "\n".join(lines) + "\n"


def tuner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuner.cli", *args]


def default_sigint() -> None:
    """``preexec_fn`` for a child that must answer Ctrl-C even when this process was started
    with SIGINT ignored (a background job of a non-interactive shell is)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(args: list[str], log_path: Path, env: Mapping[str, str] | None = None
          ) -> subprocess.Popen:
    """Start a tuner process in its own process group, output to ``log_path``."""
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    fh = open(log_path, "ab")  # noqa: SIM115 (owned by the child)
    try:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True)
    finally:
        fh.close()


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal a process and everything it started (its evaluation processes too)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_until(pred: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def config_of(row: Mapping[str, Any]) -> tuple:
    return (row.get("x"), row.get("y"), row.get("mode"))


def stored_trials(url: str, name: str) -> list[Any]:
    """Every trial of a study, read fresh (no cache) from storage."""
    import optuna

    # a reader: creating the tables here would race the run that is creating them
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True,
                                         skip_compatibility_check=True)
    try:
        sid = storage.get_study_id_from_name(name)
        return storage.get_all_trials(sid, deepcopy=False)
    finally:
        storage.engine.dispose()


def trial_counts(url: str, name: str) -> dict[str, int]:
    """Trials per state; empty while the study does not exist or storage is down."""
    try:
        return dict(Counter(t.state.name for t in stored_trials(url, name)))
    except Exception:
        return {}


# -- figures ----------------------------------------------------------------------------------
@dataclass
class Figures:
    scenario: str
    trials_target: int
    trials_run: int  # trials stored with an outcome (complete or failed with a reason)
    faults_injected: int
    failures_with_reason: int
    trials_lost: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def _lost_and_reasons(trials: list[Any], target: int) -> tuple[int, int, int, int]:
    """(finished, failures with a stored reason, failures without, shortfall vs target)."""
    from optuna.trial import TrialState

    # PRUNED: a config that could not run (stored without values)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and not t.user_attrs.get("requeued"))]
    fails = [t for t in trials if t.state == TrialState.FAIL]
    with_reason = sum(1 for t in fails if t.user_attrs.get("reason"))
    return len(finished), with_reason, len(fails) - with_reason, max(0, target - len(finished))


def evaluator_faults(workdir: Path, mode: str, trials: int) -> Figures:
    """``tuner run`` on the toy space with a FaultyEvaluator firing on x == 3 (half the trials)."""
    import tomllib

    from tuner.runner import Runner
    from tuner.spec import parse_spec

    url = f"sqlite:///{workdir / f'faults-{mode}.db'}"
    # a grid over x in {3, 4} and trials/2 values of y: exactly half the trials are faulty
    params = (f"[space.params.x]\nchoices = [3, 4]\n[space.params.y]\nchoices = "
              f"{list(range(trials // 2))}\n[space.params.mode]\nfixed = \"b\"")
    toml = toy_study_toml(f"faults-{mode}", trials=trials, sampler="grid",
                          evaluator="tuner.testing.toys:FaultyEvaluator",
                          options={"mode": mode, "trigger_x": 3},
                          timeout_s=1.0 if mode == "hang" else 30,
                          memory_mib=1024 if mode == "alloc" else None, params=params)
    t0 = time.monotonic()
    Runner(parse_spec(tomllib.loads(toml)), url, progress=False).run()
    trials_ = stored_trials(url, f"faults-{mode}")
    injected = sum(1 for t in trials_ if t.params.get("x") == 3)
    finished, with_reason, without, short = _lost_and_reasons(trials_, trials)
    wrong = sum(1 for t in trials_ if (t.params.get("x") == 3) != (t.state.name == "FAIL"))
    notes = [f"{wrong} trials with the wrong outcome"] if wrong else []
    reasons = sorted({str(t.user_attrs.get("reason")).split(":")[0][:60] for t in trials_
                      if t.state.name == "FAIL"})
    notes.append("reasons: " + "; ".join(reasons))
    return Figures(f"evaluator {mode}", trials, finished, injected, with_reason,
                   short + without + wrong, time.monotonic() - t0, notes)


def runner_sigkill(workdir: Path, trials: int, kill_after: int) -> Figures:
    """SIGKILL ``tuner run`` after ``kill_after`` stored trials, resume, compare."""
    url = f"sqlite:///{workdir / 'runner-kill.db'}"
    log = workdir / "runner-kill.evals.jsonl"
    study = workdir / "runner-kill.toml"
    study.write_text(toy_study_toml("runner-kill", trials=trials,
                                    options={"sleep_s": 0.05, "log": str(log)}))
    t0 = time.monotonic()
    proc = spawn(tuner_cmd("run", str(study), "--storage", url, "--quiet"),
                 workdir / "runner-kill.out")
    wait_until(lambda: _safe_count(url, "runner-kill") >= kill_after, 120, "trials to store")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.params, t.values) for t in stored_trials(url, "runner-kill")}
    time.sleep(1.0)  # the killed runner's evaluation processes exit on their own
    n_log = len(read_log(log))
    subprocess.run(tuner_cmd("run", str(study), "--storage", url, "--quiet"), check=True,
                   capture_output=True, timeout=300)
    after = stored_trials(url, "runner-kill")
    kept = sum(1 for t in after if before.get(t.number) == (t.params, t.values))
    finished, with_reason, without, short = _lost_and_reasons(after, trials)
    numbers = [t.number for t in after]
    dup_numbers = len(numbers) - len(set(numbers))
    lost = (len(before) - kept) + short + without + dup_numbers
    stored_configs = {(p.get("x"), p.get("y"), p.get("mode")) for p, v in before.values() if v}
    redone = sum(config_of(r) in stored_configs for r in read_log(log)[n_log:])
    return Figures("runner SIGKILL + resume", trials, finished, 1, with_reason, lost,
                   time.monotonic() - t0, [f"{len(before)} trials stored before the kill, "
                                           f"{kept} of them unchanged after resume",
                                           f"{redone} stored results measured again"])


def _safe_count(url: str, name: str) -> int:
    try:
        return len(stored_trials(url, name))
    except Exception:
        return 0


def workers_sigkill(workdir: Path, pg: Any, trials: int, workers: int = 4) -> Figures:
    """``workers`` tuner workers on PostgreSQL; SIGKILL one (and its evaluator) mid-trial."""
    url = pg.create_database("workers_kill")
    log = workdir / "workers-kill.evals.jsonl"
    study = workdir / "workers-kill.toml"
    study.write_text(toy_study_toml("workers-kill", trials=trials,
                                    options={"sleep_s": 0.1, "log": str(log)}))
    t0 = time.monotonic()
    procs = [spawn(tuner_cmd("worker", str(study), "--storage", url, "--heartbeat", "1"),
                   workdir / f"worker-{i}.out") for i in range(workers)]
    victim = procs[0]
    killed = _kill_mid_trial(url, "workers-kill", victim, after=trials // 5)
    for p in procs[1:]:
        p.wait(timeout=600)
    after = stored_trials(url, "workers-kill")
    finished, with_reason, without, short = _lost_and_reasons(after, trials)
    dups = duplicate_evaluations(after, read_log(log))
    notes = [f"killed worker pid {victim.pid} during trial {killed}",
             f"{dups} configs evaluated twice"]
    return Figures(f"{workers} workers, one SIGKILLed mid-trial", trials, finished, 1,
                   with_reason, short + without, time.monotonic() - t0, notes)


def _kill_mid_trial(url: str, name: str, victim: subprocess.Popen, after: int) -> int:
    """Once ``after`` trials are complete, SIGKILL ``victim`` (and its evaluation process)
    while it runs a trial; returns that trial's number.

    The victim is frozen (SIGSTOP) before its trials are read, so "it is running trial N"
    is still true when the SIGKILL lands; if it is between trials it is thawed and retried.
    """
    from optuna.trial import TrialState

    tag = f":{victim.pid}"

    def complete() -> int:
        try:
            return sum(t.state == TrialState.COMPLETE for t in stored_trials(url, name))
        except Exception:
            return 0

    wait_until(lambda: complete() >= after, 180, f"{after} complete trials", poll=0.05)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kill_group(victim, signal.SIGSTOP)
        running = [t.number for t in stored_trials(url, name) if t.state == TrialState.RUNNING
                   and str(t.user_attrs.get("worker", "")).endswith(tag)]
        if running:
            kill_group(victim, signal.SIGKILL)
            victim.wait()
            return running[0]
        kill_group(victim, signal.SIGCONT)
        time.sleep(0.03)
    raise TimeoutError("the victim worker was never caught running a trial")


def duplicate_evaluations(trials: list[Any], log: list[dict[str, Any]]) -> int:
    """Configs evaluated more than once, beyond the re-run of an evaluation whose worker died
    (at most one per re-queued trial)."""
    per_config = Counter(config_of(r) for r in log)
    allowed = Counter()
    for t in trials:
        if t.user_attrs.get("requeued"):
            allowed[(t.params.get("x"), t.params.get("y"), t.params.get("mode"))] += 1
    return sum(max(0, n - 1 - allowed[c]) for c, n in per_config.items())


def postgres_restart(workdir: Path, pg: Any, trials: int, workers: int = 2,
                     outage_s: float = 3.0) -> Figures:
    """Crash PostgreSQL (immediate shutdown) mid-study, restart it after ``outage_s``."""
    url = pg.create_database("pg_restart")
    log = workdir / "pg-restart.evals.jsonl"
    study = workdir / "pg-restart.toml"
    study.write_text(toy_study_toml("pg-restart", trials=trials,
                                    options={"sleep_s": 0.05, "log": str(log)}))
    t0 = time.monotonic()
    procs = [spawn(tuner_cmd("worker", str(study), "--storage", url, "--heartbeat", "1"),
                   workdir / f"pgr-worker-{i}.out") for i in range(workers)]
    wait_until(lambda: trial_counts(url, "pg-restart").get("COMPLETE", 0) >= trials // 4, 180,
               "a quarter of the trials")
    before = {t.number: (t.params, t.values) for t in stored_trials(url, "pg-restart")
              if t.state.name == "COMPLETE"}
    pg.stop("immediate")
    time.sleep(outage_s)
    pg.start()
    codes = [p.wait(timeout=600) for p in procs]
    after = stored_trials(url, "pg-restart")
    kept = sum(1 for t in after if before.get(t.number) == (t.params, t.values))
    finished, with_reason, without, short = _lost_and_reasons(after, trials)
    dups = duplicate_evaluations(after, read_log(log))
    return Figures("PostgreSQL crash + restart mid-study", trials, finished, 1, with_reason,
                   (len(before) - kept) + short + without + sum(c != 0 for c in codes),
                   time.monotonic() - t0,
                   [f"{len(before)} complete before the crash, {kept} unchanged after",
                    f"worker exit codes {codes}", f"{dups} configs evaluated twice"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller studies")
    p.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL scenarios")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    n = 12 if args.quick else 40
    rows: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="tuner-reliability-") as tmp:
        work = Path(tmp)
        for mode in ("raise", "hang", "exit", "alloc"):
            rows.append(evaluator_faults(work, mode, n if mode != "hang" else n // 2))
            print(_line(rows[-1]), flush=True)
        rows.append(runner_sigkill(work, 60 if args.quick else 120, 20))
        print(_line(rows[-1]), flush=True)
        if not args.no_postgres:
            from tuner.testing.postgres import PgServer, PgUnavailable

            try:
                with PgServer() as pg:
                    rows.append(workers_sigkill(work, pg, 100 if args.quick else 200))
                    print(_line(rows[-1]), flush=True)
                    rows.append(postgres_restart(work, pg, 40 if args.quick else 80))
                    print(_line(rows[-1]), flush=True)
            except PgUnavailable as exc:
                print(f"PostgreSQL scenarios skipped: {exc}", flush=True)
    print()
    print("| scenario | trials run | faults injected | failures with reason | trials lost |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.scenario} | {r.trials_run}/{r.trials_target} | {r.faults_injected} | "
              f"{r.failures_with_reason} | {r.trials_lost} |")
    total = Figures("total", sum(r.trials_target for r in rows),
                    sum(r.trials_run for r in rows), sum(r.faults_injected for r in rows),
                    sum(r.failures_with_reason for r in rows),
                    sum(r.trials_lost for r in rows), sum(r.seconds for r in rows))
    print(f"| **total** | {total.trials_run}/{total.trials_target} | {total.faults_injected} "
          f"| {total.failures_with_reason} | {total.trials_lost} |")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows + [total]], indent=1))
    return 0 if total.trials_lost == 0 else 1


def _line(r: Figures) -> str:
    return (f"{r.scenario}: {r.trials_run}/{r.trials_target} trials, {r.faults_injected} "
            f"faults, {r.failures_with_reason} failures with reason, {r.trials_lost} lost "
            f"({r.seconds:.1f} s); " + "; ".join(r.notes))


if __name__ == "__main__":
    sys.exit(main())

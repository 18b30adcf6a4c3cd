"""``tuner ci``: the scheduled tuning job that catches regressions of the system under test.

One run: re-evaluate the baseline's best config on the current evaluator (drift is measured,
not guessed; the result bypasses the cache), run a budgeted study warm-started from the
previous front, compare, and write a report (``summary.md``, ``report.json``, ``plot.png``).
The baseline file changes only with ``--update-baseline``.

Verdict (``--max-regression PCT``, default 5): the job fails when the best feasible value of
the first objective is more than PCT % worse than the baseline's, when the baseline's best
config got more than PCT % worse on any objective, or when it is no longer feasible.

Exit codes: 0 no regression, 3 regression, 2 bad input, 1 internal error.

Parts: ``_baseline`` (budget, baseline/report schema, warm-start points), ``_verdict``
(``judge``), ``_job`` (the run and the command), ``_report`` (summary.md, report.json,
plot.png).
"""

from __future__ import annotations

from collections.abc import Sequence

from tuner._command import EXIT_REGRESSION, standalone
from tuner.ci._baseline import (
    BASELINE_SCHEMA,
    REPORT_SCHEMA,
    load_baseline,
    parse_budget,
)
from tuner.ci._job import DESCRIPTION, add_arguments, run, run_job
from tuner.ci._verdict import Verdict, better_pct, judge


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``tuner ci ARGS...`` on its own (same parser and error style as ``tuner ci``)."""
    return standalone("tuner ci", add_arguments, run, argv, DESCRIPTION)


__all__ = ["BASELINE_SCHEMA", "EXIT_REGRESSION", "REPORT_SCHEMA", "Verdict", "add_arguments",
           "better_pct", "cli_main", "judge", "load_baseline", "parse_budget", "run", "run_job"]

"""What every ``tuner`` subcommand shares: exit codes, the argument parser, the error style.

A subcommand is a pair ``add_arguments(parser)`` / ``run(args) -> int``; ``tuner.cli`` wires
them all into one parser, and a module may also run on its own through ``standalone``. Either
way input errors read the same: one line on stderr (``error: FIELD: message``), exit 2, no
traceback (an argparse usage error is one line too).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from tuner._errors import BadInput, TunerError

#: 0 success; 1 internal error (or targets missed); 2 bad input; 3 the CI job found a
#: regression; 130 interrupted (Ctrl-C, SIGTERM), completed work stored
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_REGRESSION, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

STORAGE_HELP = "SQLAlchemy URL (default: $TUNER_STORAGE or sqlite:///~/.tuner/tuner.db)"

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse's own code too)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def one_line(exc: BaseException) -> str:
    """The message as one printable line: input values may carry newlines or escape codes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(exc))


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """``BadInput`` naming the option when one of ``names`` is given and not a finite number
    > 0 (``--trials``, ``--timeout``, ``--workers``...)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise BadInput(f"--{name.replace('_', '-')}", f"{value} must be > 0")


def execute(run: Run, args: argparse.Namespace) -> int:
    """``run(args)`` with every error turned into its one-line message and exit code."""
    try:
        return int(run(args) or 0)
    except BadInput as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TunerError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # keep tracebacks for debugging, one line for users
        if os.environ.get("TUNER_DEBUG"):
            raise
        from tuner._storage_errors import storage_error

        fault = storage_error(exc)  # a database fault: say which, without the SQL
        if fault is not None:
            print(f"error: {one_line(fault)}", file=sys.stderr)
            return EXIT_BAD_INPUT if isinstance(fault, BadInput) else EXIT_INTERNAL
        print(f"internal error: {type(exc).__name__}: {one_line(exc)} (set TUNER_DEBUG=1 for "
              "the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def standalone(prog: str, add_arguments: AddArguments, run: Run,
               argv: Sequence[str] | None = None, description: str | None = None) -> int:
    """Parse ``argv`` for one subcommand and run it, as ``tuner PROG ...`` would."""
    parser = Parser(prog=prog, description=description)
    add_arguments(parser)
    words = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(words)
    args.argv = words
    return execute(run, args)


__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_REGRESSION",
           "Parser", "STORAGE_HELP", "check_positive", "execute", "one_line", "standalone"]

"""tuner: automated configuration search for ML systems.

The names below are the contracts a plug-in needs (a space, an evaluator, a validation report,
the errors they raise, and process helpers for evaluators that run programs); the in-house
domains import them from here too.
"""

from tuner._errors import (
    BadInput,
    CatalogError,
    MissingExtra,
    TunerError,
    UnknownName,
    as_written,
    did_you_mean,
)
from tuner._evaluator import BaseEvaluator, EvalResult, Option, Status, config_key
from tuner._process import (
    ServerError,
    ServerProcess,
    describe_exit,
    free_port,
    kill_group,
    run_command,
    tail,
)
from tuner._space import BaseSpace, Categorical, Float, Int, Param, is_active
from tuner._validation import ValidationReport, ValidationRow

__version__ = "0.1.0"

__all__ = ["BadInput", "BaseEvaluator", "BaseSpace", "CatalogError", "Categorical", "EvalResult",
           "Float", "Int", "MissingExtra", "Option", "Param", "ServerError", "ServerProcess",
           "Status", "TunerError", "UnknownName", "ValidationReport", "ValidationRow",
           "as_written", "config_key", "describe_exit", "did_you_mean", "free_port", "is_active",
           "kill_group", "run_command", "tail"]

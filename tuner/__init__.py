"""tuner: automated configuration search for ML systems."""

from tuner._errors import BadInput, CatalogError, MissingExtra, TunerError, UnknownName
from tuner._evaluator import BaseEvaluator, EvalResult, Status, config_key
from tuner._process import ServerError, ServerProcess, describe_exit, run_command
from tuner._space import BaseSpace, Categorical, Float, Int

__version__ = "0.1.0"

__all__ = ["BadInput", "BaseEvaluator", "BaseSpace", "CatalogError", "Categorical", "EvalResult",
           "Float", "Int", "MissingExtra", "ServerError", "ServerProcess", "Status", "TunerError",
           "UnknownName", "config_key", "describe_exit", "run_command"]

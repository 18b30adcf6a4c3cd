"""tuner: automated configuration search for ML systems.

The names below are the contracts a plug-in needs (a space, an evaluator, a validation report
and the errors they raise); the in-house domains import them from here too.
"""

from tuner._errors import BadInput, CatalogError, MissingExtra, TunerError, UnknownName
from tuner._evaluator import BaseEvaluator, EvalResult, Status, config_key
from tuner._space import BaseSpace, Categorical, Float, Int, Param, is_active
from tuner._validation import ValidationReport, ValidationRow

__version__ = "0.1.0"

__all__ = ["BadInput", "BaseEvaluator", "BaseSpace", "CatalogError", "Categorical", "EvalResult",
           "Float", "Int", "MissingExtra", "Param", "Status", "TunerError", "UnknownName",
           "ValidationReport", "ValidationRow", "config_key", "is_active"]

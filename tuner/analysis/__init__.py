"""Study analysis as plain data, for the dashboard, the CLI and reports.

Everything here takes light trial rows (``tuner._readonly_storage.TrialRow``) and returns
dataclasses, lists and dicts: no plotting, no Streamlit. Optuna's visualization module follows
the same split (compute ``_get_*_info`` first, draw second).
"""

from tuner.analysis._bench import (
    BenchView,
    bench_views,
    find_bench_files,
    load_bench,
    parse_bench,
    parse_summary,
)
from tuner.analysis._common import (
    OUTCOMES,
    Objective,
    guess_direction,
    metric_matrix,
    metric_names,
    metric_ranges,
    metric_value,
    outcome,
    outcome_counts,
    param_names,
    reason_pattern,
    study_objectives,
)
from tuner.analysis._compare import Comparison, StudyRun, compare, shared_metrics
from tuner.analysis._convergence import Convergence, convergence, default_reference
from tuner.analysis._domains import DomainBreakdown, domain_breakdown
from tuner.analysis._feasibility import (
    Cell,
    FeasibilityGrid,
    FeasibilityMap,
    feasibility_grid,
    feasibility_map,
)
from tuner.analysis._fidelity import (
    FidelityReport,
    MetricFidelity,
    fidelity_between,
    fidelity_within,
    has_predictions,
    ladder_rounds,
)
from tuner.analysis._front import Limit, ParetoView, knee_index, pareto_view, pick_best
from tuner.analysis._importance import Importances, param_importances
from tuner.analysis._overview import overview_rows, study_state
from tuner.analysis._parallel import Axis, parallel_axes
from tuner.analysis._trials import (
    TrialDetail,
    TrialQuery,
    export_records,
    query_records,
    reproduce_command,
    to_csv,
    to_json,
    to_jsonl_configs,
    trial_detail,
    trial_records,
)

__all__ = [
    "Axis", "BenchView", "Cell", "Comparison", "Convergence", "DomainBreakdown",
    "FeasibilityGrid",
    "FeasibilityMap", "FidelityReport", "Importances", "Limit", "MetricFidelity", "OUTCOMES",
    "Objective", "ParetoView", "StudyRun", "TrialDetail", "TrialQuery", "bench_views", "compare",
    "convergence", "default_reference", "domain_breakdown", "export_records", "feasibility_grid",
    "feasibility_map", "fidelity_between", "fidelity_within", "ladder_rounds", "find_bench_files",
    "guess_direction", "has_predictions", "knee_index", "load_bench", "metric_matrix",
    "metric_names", "metric_ranges", "metric_value", "outcome", "outcome_counts",
    "overview_rows", "parallel_axes", "param_importances", "param_names", "parse_bench",
    "parse_summary",
    "pareto_view", "pick_best", "query_records", "reason_pattern", "reproduce_command",
    "shared_metrics", "study_objectives", "study_state", "to_csv", "to_json",
    "to_jsonl_configs", "trial_detail", "trial_records",
]

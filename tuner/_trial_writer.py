"""Write finished trials into Optuna's RDB tables in one transaction each.

Optuna's ``create_new_trial(template_trial=...)`` issues an ORM query and insert per
parameter and attribute (about 2 ms each on SQLite); a study with ten user attributes pays
more for that than for sampling. This writer inserts the same rows with SQLAlchemy Core in one
transaction, together with the evaluation-cache row, so the stored study is exactly what
Optuna would have written and any Optuna tool reads it (``tests/tuner/test_trial_writer.py``
compares the rows with Optuna's own ``add_trial``). Constraint values are written in both of
Optuna's forms (``tuner._record.with_list_form``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from optuna.distributions import distribution_to_json
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial

from tuner._record import with_list_form

_T = models.TrialModel.__table__
_P = models.TrialParamModel.__table__
_V = models.TrialValueModel.__table__
_U = models.TrialUserAttributeModel.__table__
_S = models.TrialSystemAttributeModel.__table__


class TrialWriter:
    """Appends finished trials to one study; the runner must be the study's only writer."""

    def __init__(self, engine: sa.Engine, study_id: int) -> None:
        self.engine, self.study_id = engine, study_id
        with engine.connect() as conn:
            self.next_number = conn.execute(
                sa.select(sa.func.count()).select_from(_T).where(_T.c.study_id == study_id)
            ).scalar_one()

    def write(self, trial: FrozenTrial, extra: Sequence[tuple[sa.Table, dict[str, Any]]] = ()
              ) -> int:
        """Insert ``trial`` (and ``extra`` rows, e.g. a cache entry); returns its number."""
        number = self.next_number
        with self.engine.begin() as conn:
            inserted = conn.execute(_T.insert().values(
                number=number, study_id=self.study_id, state=trial.state.name,
                datetime_start=trial.datetime_start or datetime.now(),
                datetime_complete=trial.datetime_complete or datetime.now(),
            )).inserted_primary_key
            assert inserted is not None
            trial_id = inserted[0]
            if trial.params:
                conn.execute(_P.insert(), [
                    {"trial_id": trial_id, "param_name": k,
                     "param_value": trial.distributions[k].to_internal_repr(v),
                     "distribution_json": distribution_to_json(trial.distributions[k])}
                    for k, v in trial.params.items()])
            if trial.values is not None:
                rows = []
                for i, v in enumerate(trial.values):
                    value, kind = models.TrialValueModel.value_to_stored_repr(v)
                    rows.append({"trial_id": trial_id, "objective": i, "value": value,
                                 "value_type": kind.name})
                conn.execute(_V.insert(), rows)
            for table, attrs in ((_U, trial.user_attrs),
                                 (_S, with_list_form(trial.system_attrs))):
                if attrs:
                    conn.execute(table.insert(), [
                        {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                        for k, v in attrs.items()])
            for table, row in extra:
                conn.execute(table.insert(), [row])
        self.next_number += 1
        return number

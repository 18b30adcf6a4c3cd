"""Where constraint values live on a trial (Optuna's convention: > 0 means violated).

The runner sets them with ``trial.set_constraint(name, value)`` (system attributes
``constraints:<name>``); Optuna 5's samplers read them back through ``FrozenTrial.constraints``.
``CONSTRAINTS_KEY`` alone holds the older list form, which Optuna still reads.
"""

#: Optuna's system-attribute key (and prefix) for constraint values
CONSTRAINTS_KEY = "constraints"

"""Evaluators, one folder per domain: each holds its evaluators, model, validation and data, and
its ``__init__`` (the face that the registry names) says where everything of the domain lives.

* ``training/``: ``training-sim``;  ``serving/``: ``serving-sim``, ``serving-real``;
  ``kernels/``: ``kernel-sim``, ``kernel-gpu``, ``kernel-replay``;
  ``quant/``: ``quant-sim``, ``quant-real``.
* Of no particular domain: ``command.py`` (``command``: a user's own benchmark command).
* Shared by the domains: ``_perf.py`` (the roofline: GEMM, attention and collective times),
  ``_catalog.py`` with ``catalog/`` (hardware, models, workloads) and ``data/gemm/`` (measured
  H100 GEMMs that the roofline's GEMM curve is fitted to).
"""

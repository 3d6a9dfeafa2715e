"""``genctl tune``: throughput at equal control — search solver, steps, guidance, sampling controls,
precision, backend and batch for the fastest setting whose control accuracy stays within a drop of
the bundle's current defaults, and record it as the bundle's defaults.

- ``space.py``: the candidates (from the sampler's own Control declarations) and the reference;
- ``search.py``: the measurements (``eval``'s evaluators, ``bench``'s timing) and successive halving;
- ``report.py``: the Pareto table, JSON records and the manifest record (``manifest["tuned"]``).
"""
from __future__ import annotations

from genctl.tune.report import records, tune_table, tuned_record, write_tuned
from genctl.tune.search import Criterion, TuneResult, check_batches, check_budget, check_criterion, choose, pareto, tune
from genctl.tune.space import Candidate, candidates, control_grid, parse_backends

__all__ = ["Candidate", "Criterion", "TuneResult", "candidates", "check_batches", "check_budget", "check_criterion", "choose",
           "control_grid", "pareto", "parse_backends", "records", "tune", "tune_table", "tuned_record", "write_tuned"]

"""Fitting potentials to labelled frames, and measuring their errors.

One fit per family, one verb: :func:`fit_lennard_jones`, :func:`fit_gap`,
:func:`fit_bpnn`. Each accepts frames or a file path plus optional test
frames, validates its settings before any work, and returns a calculator
(:class:`~ase_mlcalc.MLCalculator`) with

* ``calc.metrics``: set name ("train", "validation" where the fit holds one
  out, "test") -> error metrics (:func:`error_metrics`: energy RMSE/MAE in
  meV/atom, force RMSE/MAE in eV/Å);
* ``calc.model.fit_info``: ``history`` (a list of dicts, one per
  iteration/epoch where the fit has one), ``wall_time_s`` and family-specific entries.

:mod:`.data` holds frames, reference values, composition and e0;
:mod:`.metrics` predictions, error tables and parity plots (the one
evaluate -> table -> plot path).
"""

from .bpnn import fit_bpnn, train_bpnn
from .data import (composition_matrix, fit_e0, frame_graphs, load_frames, read_frames, reference_values,
                   species_of)
from .lennard_jones import fit_lennard_jones
from .metrics import error_metrics, evaluate, format_error_table, group_metrics, parity_plot, predict, report
from .sparse_gp import cur_selection, fit_gap

__all__ = ["fit_lennard_jones", "fit_gap", "fit_bpnn", "train_bpnn", "read_frames", "load_frames",
           "reference_values", "composition_matrix", "fit_e0", "species_of", "frame_graphs", "predict",
           "error_metrics", "group_metrics", "evaluate", "format_error_table", "parity_plot", "report", "cur_selection"]

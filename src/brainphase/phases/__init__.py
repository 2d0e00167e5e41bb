"""Phases of training: breakpoints on the log-token axis.

Per checkpoint we have trajectories (encoding mean r at the chosen layer,
benchmark accuracy, probing score), each with a standard error from its
bootstrap replicates. Three transitions are read in them:

1. encoding and benchmark rise -- *brain alignment & instruction following*;
2. encoding falls while the benchmark stagnates -- *brain detachment &
   stagnation*;
3. benchmark and probing rise, encoding recovers -- *brain realignment &
   consolidation*.

Here the transitions are found, not assumed. The modules, from low to high level:

* :mod:`.hinge` -- segmented (hinge) regression: design matrices, weighted
  fits, the exhaustive breakpoint search and BIC;
* :mod:`.segments` -- the segments of one segmentation, their slopes and signs;
* :mod:`.detect` -- :func:`detect_breakpoints` and its bootstrap;
* :mod:`.labels` -- phase names from slope signs, the phase table;
* :mod:`.trajectories` -- the three series and their replicates from the
  workflow's tables;
* :mod:`.analysis` -- all of it for one model, or every model of a study.

:mod:`.plots` draws the figures; nothing here imports it.
"""

from .analysis import analyse_model, analyse_study, duplicate_steps
from .detect import BootstrapBreakpoints, bootstrap_breakpoints, detect_breakpoints
from .hinge import DISPERSIONS, breakpoint_combinations, design
from .labels import ALIGNMENT, DETACHMENT, REALIGNMENT, label_phases, phase_table
from .segments import Segment, Segmentation, slope_signs
from .trajectories import SERIES, best_layer, build_trajectories, resolve_layer

__all__ = [
    "ALIGNMENT", "DETACHMENT", "DISPERSIONS", "REALIGNMENT", "SERIES", "BootstrapBreakpoints", "Segment",
    "Segmentation", "analyse_model", "analyse_study", "best_layer", "bootstrap_breakpoints",
    "breakpoint_combinations", "build_trajectories", "design", "detect_breakpoints", "duplicate_steps",
    "label_phases", "phase_table", "resolve_layer", "slope_signs",
]

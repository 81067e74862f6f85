"""Sweeps: many trainings from one command, on Hydra, resumable; and their reports.

- :func:`pml_proxy_anchor.sweeps.launch.main` -- ``pml-proxy-anchor sweep EXPERIMENT
  [OVERRIDES...]``: a Hydra multirun of an experiment (``configs/sweeps/<dataset>/<name>.yaml``
  or a YAML file) on the basic, joblib or submitit launcher; every job is
  ``training.run(load_config(base_config, budget + overrides))`` in ``SWEEP_DIR/<job>``, and the
  same command again resumes the sweep (:mod:`.launch`, :mod:`.job`, :mod:`.experiment`);
- ``SWEEP_DIR/sweep.json`` -- the sweep's record (:mod:`.record`);
- :mod:`.chosen_lr` -- the learning rate of each method from a learning-rate sweep;
- :mod:`.summary`, :mod:`.report`, :mod:`.plots` -- tables and figures from a sweep directory.

Importing this package imports neither Hydra nor torch; the modules do.
"""

from __future__ import annotations

from pml_proxy_anchor.sweeps.errors import (
    EmptySweepError,
    ExperimentNotFoundError,
    SweepConfigError,
)

__all__ = ["EmptySweepError", "ExperimentNotFoundError", "SweepConfigError"]

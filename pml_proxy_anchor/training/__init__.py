"""Training on PML for the Proxy-Anchor paper's recipe: configs, the run, checkpoints, evaluation.

- :func:`load_config` -- YAML + ``defaults`` composition + dotted overrides, unknown keys refused.
- :func:`run` -- one training run (PML ``MetricLossOnly``, tester, logging, checkpoints, resume).
- :func:`evaluate` -- Recall@K of a finished run's best (or last) checkpoint.
"""

from __future__ import annotations

from pml_proxy_anchor.training.config import load_config
from pml_proxy_anchor.training.errors import (
    CheckpointNotFoundError,
    ConfigKeyError,
    ConfigMismatchError,
    ConfigValueError,
    DeviceNotAvailableError,
    NonFiniteLossError,
    RunDirectoryExistsError,
)
from pml_proxy_anchor.training.evaluate import evaluate
from pml_proxy_anchor.training.run import run

__all__ = [
    "CheckpointNotFoundError",
    "ConfigKeyError",
    "ConfigMismatchError",
    "ConfigValueError",
    "DeviceNotAvailableError",
    "NonFiniteLossError",
    "RunDirectoryExistsError",
    "evaluate",
    "load_config",
    "run",
]

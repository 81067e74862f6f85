"""Training on PML for the Proxy-Anchor paper's recipe: configs, the run, checkpoints, evaluation.

- :func:`load_config` -- a built-in config name or a YAML file + ``defaults`` composition + dotted
  overrides, unknown keys refused; :func:`builtin_configs` lists the names.
- :func:`run` -- one training run (PML ``MetricLossOnly``, tester, logging, checkpoints, resume).
- :func:`evaluate` -- Recall@K of a finished run's best (or last) checkpoint.
- :class:`Precision` -- ``train.precision`` (fp32, tf32, bf16, fp16): autocast, loss scaling, TF32.
"""

from __future__ import annotations

from pml_proxy_anchor.training.checkpoint import CorruptCheckpointError
from pml_proxy_anchor.training.config import builtin_configs, load_config
from pml_proxy_anchor.training.errors import (
    CheckpointNotFoundError,
    ConfigFileNotFoundError,
    ConfigKeyError,
    ConfigMismatchError,
    ConfigValueError,
    DeviceNotAvailableError,
    NonFiniteLossError,
    RunDirectoryExistsError,
)
from pml_proxy_anchor.training.evaluate import evaluate
from pml_proxy_anchor.training.precision import Precision, PrecisionNotSupportedError
from pml_proxy_anchor.training.record import RunFileWriteError
from pml_proxy_anchor.training.run import RunInterrupted, run
from pml_proxy_anchor.training.speed import CompileError

__all__ = [
    "CheckpointNotFoundError",
    "CompileError",
    "ConfigFileNotFoundError",
    "ConfigKeyError",
    "ConfigMismatchError",
    "ConfigValueError",
    "CorruptCheckpointError",
    "DeviceNotAvailableError",
    "NonFiniteLossError",
    "Precision",
    "PrecisionNotSupportedError",
    "RunDirectoryExistsError",
    "RunFileWriteError",
    "RunInterrupted",
    "builtin_configs",
    "evaluate",
    "load_config",
    "run",
]

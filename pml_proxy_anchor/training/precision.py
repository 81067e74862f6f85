"""The numeric precision of a training run (``train.precision``): autocast, loss scaling, TF32.

- ``fp32`` (the default, the paper's): float32 everywhere, TF32 off. PyTorch runs cuDNN
  convolutions in TF32 (a 10-bit mantissa) on Ampere and later GPUs unless told otherwise, which
  the paper's 2020 GPUs did not; here fp32 means full float32 matmuls and convolutions.
- ``tf32``: float32 tensors, CUDA matmuls and convolutions in TF32 on Ampere and later GPUs
  (``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``). The
  switches act on CUDA only: on the CPU tf32 computes exactly as fp32.
- ``bf16``: the forward pass of trunk and embedder under ``torch.autocast(dtype=torch.bfloat16)``
  on a CUDA GPU with native bfloat16 (Ampere and later) or on the CPU; no loss scaling (bfloat16
  has float32's range).
- ``fp16``: the forward pass under ``torch.autocast(dtype=torch.float16)`` with a
  ``torch.amp.GradScaler`` (the loss scaled before ``backward``, the gradients unscaled before
  gradient clipping, steps with infinite gradients skipped). CUDA only: float16 needs loss
  scaling to keep small gradients, and CPUs compute float16 slowly; on the CPU use bf16.

In every mode the parameters (trunk, embedder, proxies) and the optimizer state stay float32
(autocast computes in low precision, it does not store in it), the embeddings are cast to float32
before the loss, and the loss computes in float32 with autocast off. Evaluation (Recall@K, the
plots, ``pml-proxy-anchor eval``) runs without autocast, in float32 with the run's TF32 setting:
the numbers measure the float32 weights, whatever precision trained them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.registry import close_matches
from pml_proxy_anchor.training.errors import ConfigValueError

#: ``train.precision`` values and what each computes in (see the module docstring).
PRECISIONS: dict[str, str] = {
    "fp32": "float32, TF32 off (the paper's)",
    "tf32": "float32 with TF32 matmuls and convolutions on Ampere and later GPUs",
    "bf16": "bfloat16 autocast (CUDA with bf16 support, or the CPU)",
    "fp16": "float16 autocast with loss scaling (CUDA only)",
}
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: A loss scale below this means the fp16 gradients were non-finite step after step: the run
#: stops instead of training on with skipped steps (DeepSpeed's ``min_loss_scale`` default).
MIN_LOSS_SCALE = 1.0


class PrecisionNotSupportedError(UserError, RuntimeError):
    """The device cannot train in the requested ``train.precision`` (bf16 on a GPU without
    bfloat16, fp16 off CUDA)."""


def check_precision(value: Any, what: str = "train.precision") -> str:
    """``value`` if it is one of :data:`PRECISIONS`, else a :class:`ConfigValueError` with the
    closest names."""
    known = ", ".join(PRECISIONS)
    if not isinstance(value, str):
        raise ConfigValueError(
            f"config key {what}={value!r} must be a name, one of {known}. Fix: {what}=fp32 "
            "(the default, the paper's)."
        )
    if value in PRECISIONS:
        return value
    close = close_matches(value, PRECISIONS)
    hint = f"Did you mean {' or '.join(close)}? " if close else ""
    raise ConfigValueError(
        f"{what}={value!r} is not supported; expected one of {known} "
        f"({'; '.join(f'{k}: {v}' for k, v in PRECISIONS.items())}). {hint}"
        f"Fix: {what}={close[0] if close else 'fp32'}."
    )


@contextmanager
def tf32_enabled(enabled: bool) -> Iterator[None]:
    """Inside the block CUDA matmuls and cuDNN convolutions use TF32 iff ``enabled``; both
    switches are restored on exit."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


class Precision:
    """The autocast, loss scaler and TF32 setting of one ``train.precision`` on one device.

    Args:
        name: one of :data:`PRECISIONS`.
        device: the run's device (``autocast`` uses its type).

    Raises:
        ConfigValueError: ``name`` is not one of :data:`PRECISIONS`.
        PrecisionNotSupportedError: bf16 on a CUDA GPU without native bfloat16, fp16 off CUDA,
            or autocast on a device other than CUDA and the CPU.
    """

    def __init__(self, name: str, device: str | torch.device) -> None:
        self.name = check_precision(name)
        self.device = torch.device(device)
        self.dtype = AUTOCAST_DTYPES.get(self.name)
        self._check_device()
        self.scaler: torch.amp.GradScaler | None = (
            torch.amp.GradScaler("cuda") if self.name == "fp16" else None
        )

    def __repr__(self) -> str:
        return f"Precision({self.name!r}, device={str(self.device)!r})"

    @property
    def tf32(self) -> bool:
        """Whether CUDA matmuls and convolutions run in TF32."""
        return self.name == "tf32"

    def autocast(self) -> AbstractContextManager[Any]:
        """The forward pass's context: ``torch.autocast`` for bf16/fp16, else nothing."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def math_mode(self) -> AbstractContextManager[None]:
        """The TF32 switches of this precision for the block (training and evaluation), set
        explicitly (on for tf32, off otherwise) and restored on exit."""
        return tf32_enabled(self.tf32)

    def state_dict(self) -> dict[str, Any]:
        """The loss scaler's state (fp16), else ``{}``; saved in ``last.pt``."""
        return dict(self.scaler.state_dict()) if self.scaler is not None else {}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore :meth:`state_dict` (a resumed fp16 run continues its loss scale); None or
        ``{}`` (a checkpoint written before loss scaling was saved) keeps the initial state."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(dict(state))

    def loss_scale_collapsed(self) -> float | None:
        """The loss scale when it fell below :data:`MIN_LOSS_SCALE` (fp16 gradients non-finite
        step after step), else None."""
        if self.scaler is None or not self.scaler.is_enabled():
            return None
        scale = float(self.scaler.get_scale())
        return scale if scale < MIN_LOSS_SCALE else None

    def _check_device(self) -> None:
        kind = self.device.type
        if self.dtype is None or (kind == "cuda" and self.name == "fp16"):
            return
        if self.name == "fp16":
            raise PrecisionNotSupportedError(
                f"train.precision=fp16 needs a CUDA GPU, and the run's device is {kind}: float16 "
                "training needs loss scaling (GradScaler, applied on CUDA), and CPUs compute "
                "float16 slowly. Fix: train.precision=bf16 (autocast on the CPU) or fp32."
            )
        if kind == "cuda":
            if not torch.cuda.is_bf16_supported(including_emulation=False):
                index = self.device.index if self.device.index is not None else 0
                name = torch.cuda.get_device_name(index)
                major, minor = torch.cuda.get_device_capability(index)
                raise PrecisionNotSupportedError(
                    f"train.precision=bf16: the GPU {name} (compute capability {major}.{minor}) "
                    "has no native bfloat16 (Ampere, compute capability 8.0, and later have it). "
                    "Fix: train.precision=fp16 (float16 with loss scaling) or fp32."
                )
            return
        if kind != "cpu":
            raise PrecisionNotSupportedError(
                f"train.precision={self.name} is supported on CUDA GPUs and the CPU; the run's "
                f"device is {kind}. Fix: train.precision=fp32 (or train.device=cpu)."
            )

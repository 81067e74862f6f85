"""The speed switches of a training run: ``train.channels_last`` and ``train.compile``.

Both are off by default (the paper's runs had neither). ``reproduce/benchmarks/precision_speed.py``
measures each against fp32 on the Omniglot CNN and BN-Inception; on a busy 2-core CPU the
channels-last step was 1.1-1.3x faster and the compiled step 1.05-1.15x (fastest steps; first
compilation 50 s and 250 s), on a GPU they are unmeasured (README, "Precision and speed
switches").

- ``train.channels_last``: the trunk and embedder in ``torch.channels_last`` memory format
  (:func:`use_channels_last`) and every 4-D input batch made channels-last before the trunk
  (:func:`channels_last_batch`). Same arithmetic, another memory layout (convolution kernels for
  NHWC, the layout of tensor cores); checkpoints hold the same values either way.
- ``train.compile``: ``torch.compile`` of the trunk for the training forward pass
  (:class:`CompiledForward`). The trunk in ``models`` stays the plain module (the tester, the
  checkpoints and the warm-up freeze see it; its ``state_dict`` keys are unchanged), and the
  compiled one shares its parameters. The first training step compiles (tens of seconds; again
  after the warm-up, when the trunk's ``requires_grad`` flags change). A compiler that fails on
  this platform (no C++ compiler, an unsupported Python) stops the run with
  :class:`CompileError` naming the fix, ``train.compile=false``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pml_proxy_anchor.errors import UserError


class CompileError(UserError, RuntimeError):
    """``torch.compile`` failed on this platform (``train.compile=true``)."""


def _compiler_errors() -> tuple[type[BaseException], ...]:
    """The exception types of a failing ``torch.compile`` (Dynamo, Inductor, the C++ build)."""
    errors: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import TorchDynamoException

        errors.append(TorchDynamoException)
        from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

        errors.extend((CppCompileError, InvalidCxxCompiler))
    except ImportError:  # another torch layout: its errors stay as they are
        pass
    return tuple(errors)


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or ['no message'])[0][:300]}"


def _compile_message(err: BaseException) -> str:
    inner = getattr(err, "inner_exception", None)  # Dynamo's BackendCompilerFailed wraps the cause
    cause = _first_line(err) + (f" ({_first_line(inner)})" if inner is not None else "")
    return (
        f"train.compile=true: torch.compile failed on this platform (torch {torch.__version__}; "
        f"{cause}). Fix: train.compile=false (the default: the same training without the "
        "compiler), or install what the message names (e.g. a C++ compiler for the CPU backend, "
        "Triton for CUDA)."
    )


def use_channels_last(models: Mapping[str, nn.Module]) -> None:
    """Put every module of ``models`` in ``torch.channels_last`` memory format (in place)."""
    for module in models.values():
        module.to(memory_format=torch.channels_last)


def channels_last_batch(data: Any) -> Any:
    """A 4-D tensor (a batch of images) in channels-last layout; anything else unchanged."""
    if torch.is_tensor(data) and data.dim() == 4:
        return data.contiguous(memory_format=torch.channels_last)
    return data


class CompiledForward:
    """``torch.compile(module)`` as a callable whose compiler failures are :class:`CompileError`.

    Compilation happens at the first call (and again when a guard fails, e.g. new
    ``requires_grad`` flags), so each call maps the compiler's errors, not only the first.
    ``options`` go to ``torch.compile`` (e.g. ``backend="eager"``).
    """

    def __init__(self, module: nn.Module, **options: Any) -> None:
        self.module = module
        try:
            self.compiled = torch.compile(module, **options)
        except RuntimeError as err:  # e.g. Dynamo on an unsupported Python
            raise CompileError(_compile_message(err)) from err

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.compiled(*args, **kwargs)
        except _compiler_errors() as err:
            raise CompileError(_compile_message(err)) from err

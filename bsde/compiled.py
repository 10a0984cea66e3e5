"""``solver.compile``: functions of the training step through ``torch.compile`` (inductor).

The compiled function computes what the eager one does (to float rounding: fused kernels sum
in another order); the first call of each new shape or mode pays the compilation. A machine
where inductor cannot compile (no C compiler, an unsupported platform) gets one clear error
naming the key instead of a compiler traceback.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from bsde.errors import TrainingError

F = TypeVar("F", bound=Callable)


class CompileError(TrainingError):
    """torch.compile could not compile a training function on this machine."""


def compiled(function: F, enabled: bool | str) -> F:
    """``function`` itself, or (``enabled``: True or a torch.compile mode such as 'reduce-overhead', which
    replays CUDA graphs) its ``torch.compile``'d version raising :class:`CompileError` on failure."""
    if not enabled:
        return function
    import torch
    import torch._dynamo  # imported here only: it costs about a second, and eager runs never need it

    inner = torch.compile(function, dynamic=False, mode=enabled if isinstance(enabled, str) else None)

    def call(*args, **kwargs):
        try:
            return inner(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise CompileError(f"solver.compile: torch.compile failed on this machine ({type(exc).__name__}: "
                               f"{lines[0] if lines else 'no message'}); set solver.compile=false") from None

    return call  # type: ignore[return-value]

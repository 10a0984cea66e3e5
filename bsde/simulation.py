"""Forward SDE paths: pure functions of (process, x0, horizon, sizes, generator).

Returned ``x`` has shape (batch, steps + 1, dim) and ``dw`` (batch, steps, dim): the
independent Brownian increments that drive the BSDE's Z . dW term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from bsde.equations.base import GeometricBrownian, Process, ScaledBrownian


@dataclass(frozen=True)
class Paths:
    """x: (batch, steps+1, dim) states; dw: (batch, steps, dim) increments; dt: step size."""

    x: torch.Tensor
    dw: torch.Tensor
    dt: float


def brownian_increments(
    batch: int, steps: int, dim: int, dt: float, *,
    generator: torch.Generator, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
    float32_normals: bool = False,
) -> torch.Tensor:
    """dW ~ N(0, dt I): (batch, steps, dim).

    ``float32_normals`` draws the standard normals in float32 and widens them: 6x cheaper on CPU
    for float64 runs, at a 6e-8 relative rounding of each draw (what training needs, not what a
    reference price needs).
    """
    draw_dtype = torch.float32 if float32_normals else dtype
    dw = torch.randn(batch, steps, dim, generator=generator, device=device, dtype=draw_dtype)
    return dw.to(dtype).mul_(math.sqrt(dt))


def uniform_correlation_root(dw: torch.Tensor, rho: float) -> torch.Tensor:
    """C^{1/2} dw along the last axis, C = (1 - rho) I + rho 11^T, in O(dim).

    The symmetric root is a I + c 11^T with a = sqrt(1 - rho), (a + c d)^2 = 1 - rho + rho d.
    """
    if rho == 0.0:
        return dw
    d = dw.shape[-1]
    a = math.sqrt(1.0 - rho)
    c = (math.sqrt(1.0 - rho + rho * d) - a) / d
    return a * dw + c * dw.sum(-1, keepdim=True)


def _brownian(process: ScaledBrownian, x0: torch.Tensor, dw: torch.Tensor, dt: float) -> torch.Tensor:
    """X_n = x0 + sigma W_{t_n}; x0 (dim,) or one start per path (batch, dim)."""
    x = torch.empty(dw.shape[0], dw.shape[1] + 1, dw.shape[2], device=dw.device, dtype=dw.dtype)
    x[:, 0] = x0
    torch.cumsum(dw, dim=1, out=x[:, 1:])
    x[:, 1:].mul_(process.sigma).add_(x0.unsqueeze(-2))
    return x


def _geometric(process: GeometricBrownian, x0: torch.Tensor, dw: torch.Tensor, dt: float) -> torch.Tensor:
    """Exact log-normal steps: log X_{n+1} = log X_n + (mu - vol^2/2) dt + vol (C^{1/2} dW)."""
    vol = torch.tensor(process.vol, device=dw.device, dtype=dw.dtype)
    noise = uniform_correlation_root(dw, process.correlation) * vol
    log_x = torch.empty(dw.shape[0], dw.shape[1] + 1, dw.shape[2], device=dw.device, dtype=dw.dtype)
    log_x[:, 0] = torch.log(x0)
    torch.cumsum(noise, dim=1, out=log_x[:, 1:])
    steps = torch.arange(1, dw.shape[1] + 1, device=dw.device, dtype=dw.dtype).unsqueeze(-1)
    log_x[:, 1:] += torch.log(x0).unsqueeze(-2) + steps * ((process.drift - 0.5 * vol * vol) * dt)
    return log_x.exp_()


_SIMULATORS: dict[type, Callable[..., torch.Tensor]] = {
    ScaledBrownian: _brownian,
    GeometricBrownian: _geometric,
}


def states_from_increments(process: Process, x0: torch.Tensor, dw: torch.Tensor, dt: float) -> torch.Tensor:
    """The path X (batch, steps+1, dim) that the increments dw (batch, steps, dim) drive."""
    return _SIMULATORS[type(process)](process, x0, dw, dt)


def diffusion_transpose(process: Process, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sigma(x)^T v along the last axis: how Z = sigma^T grad u follows from a gradient v = grad u at x."""
    if isinstance(process, ScaledBrownian):
        return process.sigma * v
    if isinstance(process, GeometricBrownian):  # sigma(x) = diag(vol x) C^{1/2}, C^{1/2} symmetric
        vol = torch.tensor(process.vol, device=x.device, dtype=x.dtype)
        return uniform_correlation_root(vol * x * v, process.correlation)
    raise TypeError(f"no diffusion for process {type(process).__name__}")


def simulate_paths(
    process: Process, x0: torch.Tensor | tuple[float, ...], total_time: float, steps: int, batch: int, *,
    generator: torch.Generator, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
    float32_normals: bool = False,
) -> Paths:
    """Simulate ``batch`` paths of the forward SDE on a uniform grid of ``steps`` steps, from x0 (dim,) or from
    one starting point per path (batch, dim)."""
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be positive, got steps={steps}, batch={batch}")
    x0 = torch.as_tensor(x0, device=device, dtype=dtype)
    dt = total_time / steps
    dw = brownian_increments(batch, steps, x0.shape[-1], dt, generator=generator, device=device, dtype=dtype,
                             float32_normals=float32_normals)
    return Paths(states_from_increments(process, x0, dw, dt), dw, dt)

"""The deep BSDE model: trainable Y_0, Z_0 and the step networks, marching the BSDE.

Y_{n+1} = Y_n - f(t_n, X_n, Y_n, Z_n) dt + Z_n . dW_n,  Z_n = net_n(X_n) for n >= 1,
and the loss is E|Y_N - g(X_N)|^2 (made linear beyond |Y_N - g| = 50, as the reference code).
"""

from __future__ import annotations

import torch
from torch import nn

from bsde.equations.base import Equation
from bsde.networks import StackedGradientNets

DELTA_CLIP = 50.0


class DeepBSDE(nn.Module):
    """Y_0 = y_offset + y_scale * y0, Z_0 = z_scale * z0 and Z_n = z_scale * net_n(X_n) for n = 1..N-1."""

    def __init__(self, equation: Equation, time_steps: int, hidden: list[int], *,
                 dtype: torch.dtype, device=None, z_scale: float = 1.0):
        super().__init__()
        self.equation = equation
        self.time_steps = time_steps
        self.z_scale = z_scale
        self.y_offset, self.y_scale = 0.0, 1.0  # Y_0 = y_offset + y_scale * y0
        kw = {"dtype": dtype, "device": device}
        self.y0 = nn.Parameter(torch.zeros((), **kw))
        self.z0 = nn.Parameter(torch.zeros(equation.dim, **kw))
        self.nets = StackedGradientNets(max(time_steps - 1, 1), equation.dim, hidden, **kw)

    def reset_parameters(self, generator: torch.Generator, y0_range: tuple[float, float]) -> None:
        """Y_0 ~ U(y0_range), z0 ~ U(-0.1, 0.1), networks as the reference code."""
        low, high = y0_range
        kw = {"generator": generator, "dtype": self.y0.dtype, "device": self.y0.device}
        with torch.no_grad():
            self.y0.copy_(low + (high - low) * torch.rand((), **kw))
            self.z0.copy_((torch.rand(self.z0.shape, **kw) * 2 - 1) * 0.1)
        self.nets.reset_parameters(generator)

    def gradients(self, x: torch.Tensor) -> torch.Tensor:
        """Z_n for n = 0..N-1 as (batch, N, dim), from X (batch, N+1, dim)."""
        z0 = self.z_start.expand(x.shape[0], 1, -1)
        if self.time_steps == 1:
            return z0
        return torch.cat([z0, self.z_scale * self.nets(x[:, 1:self.time_steps])], dim=1)

    @property
    def y_start(self) -> torch.Tensor:
        """Y_0 = y_offset + y_scale * y0 (the trainer may learn y0 in units of the terminal value's spread)."""
        return self.y_offset + self.y_scale * self.y0

    @property
    def z_start(self) -> torch.Tensor:
        """Z_0 = z_scale * z0 (the parameter lives in the same O(1) units as the networks' output)."""
        return self.z_scale * self.z0

    def forward(self, x: torch.Tensor, dw: torch.Tensor, dt: float) -> torch.Tensor:
        """Y_N (batch,) from paths X (batch, N+1, dim) and increments dW (batch, N, dim)."""
        z = self.gradients(x)
        noise = (z * dw).sum(-1)  # Z_n . dW_n, (batch, N)
        driver = self.equation.driver
        if not self.equation.driver_uses_y:  # no recursion needed: sum the driver over all steps at once
            times = torch.arange(self.time_steps, device=x.device, dtype=x.dtype) * dt
            f = driver(times, x[:, :-1], noise.new_zeros(()), z)
            return self.y_start - dt * f.sum(1) + noise.sum(1)
        y = self.y_start.expand(x.shape[0])
        for n in range(self.time_steps):
            y = y - dt * driver(n * dt, x[:, n], y, z[:, n]) + noise[:, n]
        return y


def terminal_loss(y_terminal: torch.Tensor, g_terminal: torch.Tensor) -> torch.Tensor:
    """mean |Y_N - g|^2, continued linearly beyond DELTA_CLIP to tame early outliers."""
    delta = (y_terminal - g_terminal).abs()
    return torch.where(delta < DELTA_CLIP, delta.square(), 2 * DELTA_CLIP * delta - DELTA_CLIP**2).mean()

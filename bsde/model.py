"""The deep BSDE model: trainable Y_0, Z_0 and the step networks, marching the BSDE.

euler:      Y_{n+1} = Y_n - f(t_n, X_n, Y_n, Z_n) dt + Z_n . dW_n,
trapezoid:  Y_{n+1} = Y_n - (f_n + f_{n+1}) dt / 2 + Z_n . dW_n  (f_{n+1} at a Heun predictor of Y_{n+1}),
with Z_n = net_n(X_n) for 1 <= n < N and Z_N = sigma^T grad g(X_N) (autograd of the terminal condition);
the loss is E|Y_N - g(X_N)|^2 (made linear beyond |Y_N - g| = 50, as the reference code).
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
                 dtype: torch.dtype, device=None, z_scale: float = 1.0, scheme: str = "trapezoid"):
        super().__init__()
        self.equation = equation
        self.time_steps = time_steps
        self.scheme = scheme
        #: whether the paths are steered by the learned control (see controlled_states); the trainer sets it
        self.controlled = False
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
        return torch.cat([self.z_start.expand(x.shape[0], 1, -1), self.later_gradients(x)], dim=1)

    def later_gradients(self, x: torch.Tensor) -> torch.Tensor:
        """Z_1..Z_{N-1} (batch, N-1, dim) from X (batch, N+1, dim): the step networks' output (none for N = 1)."""
        return self.nets(x[:, 1:self.time_steps], self.z_scale) if self.time_steps > 1 else x[:, 1:1]

    def z_at(self, n: int, x: torch.Tensor, batch_stats: bool = False) -> torch.Tensor:
        """Z_n at states x (B, d), for any x (not only the training paths' X_n); inference mode unless
        ``batch_stats`` (then batch norm uses x's own statistics, as in training)."""
        if n == 0:
            return self.z_start.expand(x.shape[0], -1)
        return self.nets.at_step(n - 1, x, batch_stats, scale=self.z_scale)

    def controlled_states(self, dw: torch.Tensor, dt: float, start: torch.Tensor | None = None) -> torch.Tensor:
        """X (batch, N+1, dim) under the learned control: dX = mu dt + sigma (b_n dt + dW_n), b_n = grad_z f(Z_n).

        The drift is what the learned Z makes optimal (for HJB, b = -lam Z: the feedback a = -sqrt(lam/2) Z);
        no gradient flows through it. Z_n uses batch statistics in training mode, as the forward pass does.
        ``start``: one starting point per path (batch, dim) instead of x0.
        """
        equation = self.equation
        x = (torch.as_tensor(equation.x_start, dtype=dw.dtype, device=dw.device).expand(dw.shape[0], -1)
             if start is None else start)
        states, process = [x], equation.process
        with torch.no_grad():
            for n in range(self.time_steps):
                b = equation.driver_z_gradient(n * dt, x, self.z_at(n, x, batch_stats=self.training))
                x = process.step(n * dt, x, dt, dw[:, n], control=b)
                states.append(x)
        return torch.stack(states, dim=1)

    @property
    def y_start(self) -> torch.Tensor:
        """Y_0 = y_offset + y_scale * y0 (the trainer may learn y0 in units of the terminal value's spread)."""
        return self.y_offset + self.y_scale * self.y0

    @property
    def z_start(self) -> torch.Tensor:
        """Z_0 = z_scale * z0 (the parameter lives in the same O(1) units as the networks' output)."""
        return self.z_scale * self.z0

    def forward(self, x: torch.Tensor, dw: torch.Tensor, dt: float, controlled: bool | None = None,
                z_end: torch.Tensor | None = None) -> torch.Tensor:
        """Y_N (batch,) from paths X (batch, N+1, dim) and increments dW (batch, N, dim); ``controlled``: the
        paths' measure (default ``self.controlled``; torch 2.3's compile misses a change of that attribute, so
        the trainer's compiled loss passes it); ``z_end``: see :meth:`march` (the compiled loss gets it from
        outside: autograd of g inside would break the compiled graph)."""
        return self.march(x, dw, dt, self.z_start.expand(x.shape[0], -1), later=self.later_gradients(x),
                          controlled=controlled, z_end=z_end)

    def needs_z_end(self) -> bool:
        """Whether :meth:`march` uses Z_N = sigma^T grad g(X_N) (the trapezoid scheme of a driver that uses z)."""
        return self.scheme == "trapezoid" and self.equation.driver_uses_z

    def _driver(self, t, x: torch.Tensor, z: torch.Tensor, controlled: bool) -> torch.Tensor:
        """f(t, x, z) of a driver without y; under the controlled measure (drift sigma b) f(z) - b . z."""
        f = self.equation.driver(t, x, x.new_zeros(()), z)
        if controlled:
            f = f - (self.equation.driver_z_gradient(t, x, z.detach()) * z).sum(-1)
        return f

    def march(self, x: torch.Tensor, dw: torch.Tensor, dt: float, z: torch.Tensor,
              y_start: torch.Tensor | None = None, *, later: torch.Tensor | None = None,
              controlled: bool | None = None, z_end: torch.Tensor | None = None) -> torch.Tensor:
        """Y_N (batch,) from X (batch, N+1, dim), dW (batch, N, dim) and Z_0..Z_{N-1} (batch, N, dim).

        With ``later`` (Z_1..Z_{N-1}, (batch, N-1, dim)), ``z`` is Z_0 alone (batch, dim): the two are used
        as they are, never copied into one tensor (the training step's Z_0 and network output). ``z_end``: the
        trapezoid's Z_N where the caller has it (default: by autograd of g at X_N).
        """
        first, later = (z[:, 0], z[:, 1:]) if later is None else (z, later)
        equation, steps = self.equation, dw.shape[1]
        controlled = self.controlled if controlled is None else controlled
        y_start = self.y_start if y_start is None else y_start
        trapezoid = self.scheme == "trapezoid"
        noise_first, noise_later = (first * dw[:, 0]).sum(-1), (later * dw[:, 1:]).sum(-1)  # Z_n . dW_n
        # Z_N for the trapezoid's last node (it only matters where f depends on z)
        if z_end is None and trapezoid:
            z_end = terminal_z(equation, x[:, -1]) if self.needs_z_end() else first
        if not equation.driver_uses_y:  # no recursion needed: sum the driver over all steps at once
            times = torch.arange(1, steps, device=x.device, dtype=x.dtype) * dt
            f_first = self._driver(0.0, x[:, 0], first, controlled)
            integral = self._driver(times, x[:, 1:steps], later, controlled).sum(1)
            if trapezoid:  # (f_0 + f_N) / 2 + f_1 + ... + f_{N-1}
                integral = integral + 0.5 * (f_first + self._driver(steps * dt, x[:, steps], z_end, controlled))
            else:
                integral = integral + f_first
            return y_start - dt * integral + noise_first + noise_later.sum(1)
        y = y_start.expand(x.shape[0])
        for n in range(steps):
            z_n, noise = (first, noise_first) if n == 0 else (later[:, n - 1], noise_later[:, n - 1])
            f = equation.driver(n * dt, x[:, n], y, z_n)
            if trapezoid:
                predictor = y - dt * f + noise
                z_next = later[:, n] if n + 1 < steps else z_end
                f = 0.5 * (f + equation.driver((n + 1) * dt, x[:, n + 1], predictor, z_next))
            y = y - dt * f + noise
        return y


#: a terminal that records no gradient must stay put when x moves by this fraction (a piecewise-constant payoff)
UNRECORDED_STEP = 1e-6


def terminal_gradient(equation: Equation, x: torch.Tensor) -> torch.Tensor:
    """grad g(x) (batch, dim) by autograd; 0 for a payoff built of comparisons (``10 * (x[0] > K)``: piecewise
    constant, so its gradient is 0 almost everywhere, and torch records none). A g that records no gradient but
    changes with x (computed through numpy, say) is a ProblemError: its gradient is unknown, not 0."""
    from bsde.errors import ProblemError

    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        g = equation.terminal(leaf)
        if g.requires_grad:
            (grad,) = torch.autograd.grad(g.sum(), leaf)
            return grad
    with torch.no_grad():
        moved = equation.terminal(x.detach() * (1.0 + UNRECORDED_STEP) + UNRECORDED_STEP)
        if not bool(((moved - g).abs() <= 1e-12 * (1.0 + g.abs())).float().mean() >= 0.99):
            raise ProblemError("equation.terminal: torch records no gradient of g(x), yet g changes with x (is it "
                               "computed outside torch, e.g. through numpy?); the solver needs grad g at X_T")
    return torch.zeros_like(x)


def terminal_z(equation: Equation, x_end: torch.Tensor) -> torch.Tensor:
    """Z_N = sigma(X_N)^T grad g(X_N) (batch, dim), by autograd of the terminal condition (see terminal_gradient)."""
    grad = terminal_gradient(equation, x_end)
    return equation.process.diffusion_transpose(x_end, grad, t=equation.total_time)


def terminal_loss(y_terminal: torch.Tensor, g_terminal: torch.Tensor) -> torch.Tensor:
    """mean |Y_N - g|^2, continued linearly beyond DELTA_CLIP to tame early outliers."""
    delta = (y_terminal - g_terminal).abs()
    return torch.where(delta < DELTA_CLIP, delta.square(), 2 * DELTA_CLIP * delta - DELTA_CLIP**2).mean()

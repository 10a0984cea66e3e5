"""The deep BSDE model over a box of starting points: Y_0 and Z_0 as functions of x0.

Y_0(x) = y_offset + y_scale (y0 + v(phi(x))),  Z_0(x) = sigma(x)^T grad Y_0(x),
v a small tanh network of the box coordinates phi(x) (:func:`bsde.region.box_coordinates`), so u(0, .) is
smooth and its gradient (delta) and Hessian (gamma) come from autograd. Z_0 is tied to the gradient of Y_0
(the exact relation), so the Z_0 . dW_0 term of the loss trains the slope of the same network the value
regression trains. The later Z_n are the usual step networks.
"""

from __future__ import annotations

import torch
from torch import nn

from bsde.equations.base import Equation
from bsde.model import DeepBSDE
from bsde.networks import uniform
from bsde.region import Region, box_coordinates
from bsde.settings import SolverSettings

#: the refit (bsde.refit) also solves its least squares leaving out each of this many groups of its paths in turn
#: (path i in group i mod JACKKNIFE_GROUPS): the jackknife replicates behind the standard errors of u, delta, gamma
JACKKNIFE_GROUPS = 8


class StartNetwork(nn.Module):
    """v(x): R^d -> R, dense-tanh layers on phi(x); the last layer starts at zero (v = 0)."""

    def __init__(self, region: Region, dim: int, hidden: list[int], *, dtype: torch.dtype, device=None):
        super().__init__()
        self.region = region
        widths = [dim, *hidden, 1]
        self.layers = nn.ModuleList(nn.Linear(a, b, dtype=dtype, device=device) for a, b in zip(widths, widths[1:]))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Glorot uniform weights, zero biases, a zero last layer."""
        with torch.no_grad():
            for layer in self.layers:
                fan_out, fan_in = layer.weight.shape
                bound = (6.0 / (fan_in + fan_out)) ** 0.5
                layer.weight.copy_(uniform(layer.weight.shape, -bound, bound, generator, layer.weight))
                layer.bias.zero_()
            self.layers[-1].weight.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer at x (..., d) -> (..., width): v is an affine function of them."""
        h = box_coordinates(self.region, x)
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """v at x (..., d) -> (...)."""
        return self.layers[-1](self.features(x)).squeeze(-1)


class RegionBSDE(DeepBSDE):
    """DeepBSDE whose Y_0 and Z_0 are functions of the starting point (see the module docstring)."""

    def __init__(self, equation: Equation, settings: SolverSettings, *, device=None):
        super().__init__(equation, settings.time_steps, settings.widths(equation.dim), dtype=settings.torch_dtype,
                         device=device, scheme=settings.scheme)
        self.region = settings.region
        self.start_net = StartNetwork(self.region, equation.dim, self.region.widths(equation.dim),
                                      dtype=settings.torch_dtype, device=device)
        # the refit's jackknife replicates of the last layer (c, w), c = y0 + its bias: zeros until a refit
        width = self.start_net.layers[-1].weight.shape[1]
        self.register_buffer("start_replicates", torch.zeros(JACKKNIFE_GROUPS, 1 + width, dtype=settings.torch_dtype,
                                                             device=device))

    def reset_parameters(self, generator: torch.Generator, y0_range: tuple[float, float]) -> None:
        super().reset_parameters(generator, y0_range)
        self.start_net.reset_parameters(generator)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # saves and checkpoints written before the jackknife existed have no replicates: load them as none (no s.e.)
        state_dict.setdefault(prefix + "start_replicates", torch.zeros_like(self.start_replicates))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def start(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Y_0, Z_0) at starting points x0 (B, d): (B,), (B, d); differentiable when grad mode is on."""
        graph = torch.is_grad_enabled()
        with torch.enable_grad():
            x = x0.detach().requires_grad_(True)
            value = self.y_offset + self.y_scale * (self.y0 + self.start_net(x))
            (grad,) = torch.autograd.grad(value.sum(), x, create_graph=graph)
        z = self.equation.process.step_transpose(x0, grad, 0.0, self.equation.total_time / self.time_steps)
        return (value if graph else value.detach()), (z if graph else z.detach())

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """u(0, x) (...,) at points x (..., d), as the network gives it."""
        return self.y_offset + self.y_scale * (self.y0 + self.start_net(x))

    @property
    def has_replicates(self) -> bool:
        """Whether a refit left its jackknife replicates (see :meth:`replicate_deviations`)."""
        return bool(self.start_replicates.any())

    def replicate_deviations(self, x: torch.Tensor) -> torch.Tensor:
        """u(0, x) of each jackknife replicate of the refit minus their mean, (..., JACKKNIFE_GROUPS) at x (..., d):
        u's jackknife variance is (K - 1)/K times the sum of their squares, and its derivatives' likewise."""
        deviation = self.start_replicates - self.start_replicates.mean(0)
        return self.y_scale * (deviation[:, 0] + self.start_net.features(x) @ deviation[:, 1:].T)

    def gradients(self, x: torch.Tensor) -> torch.Tensor:
        """Z_n for n = 0..N-1 (batch, N, dim), Z_0 at each path's own start."""
        return torch.cat([self.start(x[:, 0])[1].unsqueeze(1), self.later_gradients(x)], dim=1)

    def forward(self, x: torch.Tensor, dw: torch.Tensor, dt: float, controlled: bool | None = None,
                z_end: torch.Tensor | None = None) -> torch.Tensor:
        y_start, z0 = self.start(x[:, 0])
        return self.march(x, dw, dt, z0, y_start=y_start, later=self.later_gradients(x), controlled=controlled,
                          z_end=z_end)

    def z_at(self, n: int, x: torch.Tensor, batch_stats: bool = False) -> torch.Tensor:
        if n == 0:
            return self.start(x)[1]
        return super().z_at(n, x, batch_stats)

    def _at_x0(self) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = torch.as_tensor(self.equation.x_start, dtype=self.y0.dtype, device=self.y0.device)
        return self.start(x0.unsqueeze(0))

    @property
    def y_start(self) -> torch.Tensor:
        """Y_0 at the equation's x0 (a 0-d tensor)."""
        return self._at_x0()[0][0]

    @property
    def z_start(self) -> torch.Tensor:
        """Z_0 at the equation's x0 (dim,)."""
        return self._at_x0()[1][0]


def make_model(equation: Equation, settings: SolverSettings, *, device=None) -> DeepBSDE:
    """The model ``settings`` ask for: over ``solver.region`` when it is set, else at the one point x0."""
    if settings.region is not None:
        return RegionBSDE(equation, settings, device=device)
    return DeepBSDE(equation, settings.time_steps, settings.widths(equation.dim), dtype=settings.torch_dtype,
                    device=device, scheme=settings.scheme)

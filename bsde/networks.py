"""Gradient networks for all time steps at once.

The paper uses one small network per time step t_1..t_{N-1}:
bn -> (dense -> bn -> relu) x L -> dense -> bn. The paths do not depend on the networks, so
all steps can be evaluated together: the S = N - 1 weight matrices of a layer are stacked
into one (S, in, out) tensor and applied with a single batched matmul; batch norm keeps
separate statistics and affine parameters per step.
"""

from __future__ import annotations

import torch
from torch import nn

BN_EPS = 1e-6
BN_MOMENTUM = 0.01  # torch convention: running = (1 - m) running + m batch (TF's 0.99)


class StackedBatchNorm(nn.Module):
    """Batch norm of x (S, B, F) over the batch axis, per step s and feature f."""

    def __init__(self, steps: int, features: int, *, dtype: torch.dtype, device=None):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(steps, 1, features, **kw))
        self.bias = nn.Parameter(torch.empty(steps, 1, features, **kw))
        self.register_buffer("running_mean", torch.zeros(steps, 1, features, **kw))
        self.register_buffer("running_var", torch.ones(steps, 1, features, **kw))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """TF-style init of the reference code: gamma ~ U(0.1, 0.5), beta ~ N(0, 0.1^2)."""
        with torch.no_grad():
            self.weight.copy_(torch.rand(self.weight.shape, generator=generator, dtype=self.weight.dtype) * 0.4 + 0.1)
            self.bias.copy_(torch.randn(self.bias.shape, generator=generator, dtype=self.bias.dtype) * 0.1)
            self.running_mean.zero_()
            self.running_var.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
            with torch.no_grad():
                n = x.shape[1]
                self.running_mean.lerp_(mean, BN_MOMENTUM)
                self.running_var.lerp_(var * (n / max(n - 1, 1)), BN_MOMENTUM)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + BN_EPS)
        return torch.addcmul(self.bias - mean * scale, x, scale)


class StackedLinear(nn.Module):
    """x (S, B, in) -> x @ W_s (S, B, out), no bias (a batch norm follows)."""

    def __init__(self, steps: int, fan_in: int, fan_out: int, *, dtype: torch.dtype, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(steps, fan_in, fan_out, dtype=dtype, device=device))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Glorot uniform, as Keras' Dense default."""
        fan_in, fan_out = self.weight.shape[1:]
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        with torch.no_grad():
            self.weight.copy_((torch.rand(self.weight.shape, generator=generator, dtype=self.weight.dtype) * 2 - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.weight)


class StackedGradientNets(nn.Module):
    """S per-step networks R^d -> R^d evaluated in one pass: (S, B, d) -> (S, B, d)."""

    def __init__(self, steps: int, dim: int, hidden: list[int], *, dtype: torch.dtype, device=None):
        super().__init__()
        widths = [dim, *hidden, dim]
        kw = {"dtype": dtype, "device": device}
        self.steps, self.dim = steps, dim
        self.norms = nn.ModuleList(StackedBatchNorm(steps, w, **kw) for w in widths)
        self.linears = nn.ModuleList(StackedLinear(steps, a, b, **kw) for a, b in zip(widths, widths[1:]))

    def reset_parameters(self, generator: torch.Generator) -> None:
        for module in (*self.norms, *self.linears):
            module.reset_parameters(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norms[0](x)
        for linear, norm in zip(self.linears[:-1], self.norms[1:-1]):
            h = torch.relu(norm(linear(h)))
        return self.norms[-1](self.linears[-1](h))

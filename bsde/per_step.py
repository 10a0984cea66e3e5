"""The plain per-step gradient networks: one ``torch.nn`` network per time step, run in a loop.

This is how the reference implementation (and most re-implementations) lays the model out:
S = N - 1 separate networks, each applied to its own slice X_n. It computes exactly what
:class:`bsde.networks.StackedGradientNets` computes, S small matmuls at a time instead of one
batched matmul per layer; it is the plain reference the tests compare against and what
``bsde bench`` times the batched version against.
"""

from __future__ import annotations

import torch
from torch import nn

from bsde.networks import BN_EPS, BN_MOMENTUM, StackedGradientNets


class StepNetwork(nn.Module):
    """R^d -> R^d: x^ = bn(x) (no affine), h = relu(bn(Linear(h))) x L, out = Linear(h) + b + a * x^."""

    def __init__(self, dim: int, hidden: list[int], *, dtype: torch.dtype, device=None):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        widths = [dim, *hidden, dim]
        self.norms = nn.ModuleList(nn.BatchNorm1d(w, eps=BN_EPS, momentum=BN_MOMENTUM, affine=i > 0, **kw)
                                   for i, w in enumerate(widths[:-1]))
        self.linears = nn.ModuleList(
            nn.Linear(a, b, bias=(i == len(widths) - 2), **kw) for i, (a, b) in enumerate(zip(widths, widths[1:]))
        )
        self.diagonal = nn.Parameter(torch.zeros(dim, **kw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = h = self.norms[0](x)
        for linear, norm in zip(self.linears[:-1], self.norms[1:]):
            h = torch.relu(norm(linear(h)))
        return self.linears[-1](h) + self.diagonal * x_hat


class PerStepGradientNets(nn.Module):
    """S per-step networks R^d -> R^d applied one step at a time: (B, S, d) -> (B, S, d).

    Same call signature and layout as :class:`~bsde.networks.StackedGradientNets`.
    """

    def __init__(self, steps: int, dim: int, hidden: list[int], *, dtype: torch.dtype, device=None):
        super().__init__()
        self.steps, self.dim = steps, dim
        self.nets = nn.ModuleList(StepNetwork(dim, hidden, dtype=dtype, device=device) for _ in range(steps))

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        if x.shape[1:] != (self.steps, self.dim):
            raise ValueError(f"expected x of shape (batch, {self.steps}, {self.dim}), got {tuple(x.shape)}")
        out = torch.stack([net(x[:, s]) for s, net in enumerate(self.nets)], dim=1)
        return out if scale == 1.0 else scale * out

    @torch.no_grad()
    def load_from_stacked(self, stacked: StackedGradientNets) -> PerStepGradientNets:
        """Copy weights, batch-norm affine parameters and running statistics from ``stacked``; returns self."""
        if (stacked.steps, stacked.dim) != (self.steps, self.dim) or len(stacked.linears) != len(self.nets[0].linears):
            raise ValueError("load_from_stacked: the stacked networks have another number of steps, dim or layers")
        for s, net in enumerate(self.nets):
            for mine, theirs in zip(net.norms, stacked.norms, strict=True):
                features = theirs.features
                if theirs.weight is not None:
                    mine.weight.copy_(theirs.weight[s])
                    mine.bias.copy_(theirs.bias[s])
                mine.running_mean.copy_(theirs.running_mean.view(-1, features)[s])
                mine.running_var.copy_(theirs.running_var.view(-1, features)[s])
            for mine, theirs in zip(net.linears, stacked.linears, strict=True):
                mine.weight.copy_(theirs.weight[s].T)  # nn.Linear keeps (out, in)
            net.linears[-1].bias.copy_(stacked.bias[s])
            net.diagonal.copy_(stacked.diagonal[s])
        return self

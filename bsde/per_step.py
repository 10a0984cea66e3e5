"""The plain per-step gradient networks: one ``torch.nn`` network per time step, run in a loop.

This is how the reference implementation (and most re-implementations) lays the model out:
S = N - 1 separate networks bn -> (Linear -> bn -> relu) x L -> Linear -> bn, each applied to
its own slice X_n. It computes exactly what :class:`bsde.networks.StackedGradientNets` computes,
S small matmuls at a time instead of one batched matmul per layer, and exists so that
``bsde bench`` can time the two side by side (and check that they agree).
"""

from __future__ import annotations

import torch
from torch import nn

from bsde.networks import BN_EPS, BN_MOMENTUM, StackedGradientNets


def _norm(features: int, kw: dict) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(features, eps=BN_EPS, momentum=BN_MOMENTUM, **kw)


def step_network(dim: int, hidden: list[int], *, dtype: torch.dtype, device=None) -> nn.Sequential:
    """One step's network R^d -> R^d: bn -> (Linear(no bias) -> bn -> relu) x L -> Linear(no bias) -> bn."""
    kw = {"dtype": dtype, "device": device}
    widths = [dim, *hidden]
    layers: list[nn.Module] = [_norm(dim, kw)]
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [nn.Linear(fan_in, fan_out, bias=False, **kw), _norm(fan_out, kw), nn.ReLU()]
    layers += [nn.Linear(widths[-1], dim, bias=False, **kw), _norm(dim, kw)]
    return nn.Sequential(*layers)


class PerStepGradientNets(nn.Module):
    """S per-step networks R^d -> R^d applied one step at a time: (B, S, d) -> (B, S, d).

    Same call signature and layout as :class:`~bsde.networks.StackedGradientNets`.
    """

    def __init__(self, steps: int, dim: int, hidden: list[int], *, dtype: torch.dtype, device=None):
        super().__init__()
        self.steps, self.dim = steps, dim
        self.nets = nn.ModuleList(step_network(dim, hidden, dtype=dtype, device=device) for _ in range(steps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (self.steps, self.dim):
            raise ValueError(f"expected x of shape (batch, {self.steps}, {self.dim}), got {tuple(x.shape)}")
        return torch.stack([net(x[:, s]) for s, net in enumerate(self.nets)], dim=1)

    @torch.no_grad()
    def load_from_stacked(self, stacked: StackedGradientNets) -> PerStepGradientNets:
        """Copy weights, batch-norm affine parameters and running statistics from ``stacked``; returns self."""
        if (stacked.steps, stacked.dim) != (self.steps, self.dim) or len(stacked.linears) != len(self.nets[0]) // 3:
            raise ValueError("load_from_stacked: the stacked networks have another number of steps, dim or layers")
        for s, net in enumerate(self.nets):
            norms = [m for m in net if isinstance(m, nn.BatchNorm1d)]
            linears = [m for m in net if isinstance(m, nn.Linear)]
            for mine, theirs in zip(norms, stacked.norms, strict=True):
                features = theirs.weight.shape[1]
                mine.weight.copy_(theirs.weight[s])
                mine.bias.copy_(theirs.bias[s])
                mine.running_mean.copy_(theirs.running_mean.view(-1, features)[s])
                mine.running_var.copy_(theirs.running_var.view(-1, features)[s])
            for mine, theirs in zip(linears, stacked.linears, strict=True):
                mine.weight.copy_(theirs.weight[s].T)  # nn.Linear keeps (out, in)
        return self

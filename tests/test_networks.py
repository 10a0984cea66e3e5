"""The stacked step networks equal a plain loop of per-step torch.nn networks."""

import pytest
import torch
from torch import nn

from bsde.networks import BN_EPS, BN_MOMENTUM, StackedGradientNets


def per_step_reference(stacked: StackedGradientNets, step: int) -> nn.Sequential:
    """bn -> (linear -> bn -> relu) x L -> linear -> bn built from torch.nn with the stacked weights."""
    layers: list[nn.Module] = []
    norms, linears = stacked.norms, stacked.linears

    def bn(i: int) -> nn.BatchNorm1d:
        norm = norms[i]
        width = norm.weight.shape[1]
        module = nn.BatchNorm1d(width, eps=BN_EPS, momentum=BN_MOMENTUM, dtype=torch.float64)
        with torch.no_grad():
            module.weight.copy_(norm.weight[step])
            module.bias.copy_(norm.bias[step])
            module.running_mean.copy_(norm.running_mean.view(-1, width)[step])
            module.running_var.copy_(norm.running_var.view(-1, width)[step])
        return module

    def linear(i: int) -> nn.Linear:
        weight = linears[i].weight[step]
        module = nn.Linear(weight.shape[0], weight.shape[1], bias=False, dtype=torch.float64)
        with torch.no_grad():
            module.weight.copy_(weight.T)
        return module

    layers.append(bn(0))
    for i in range(len(linears) - 1):
        layers += [linear(i), bn(i + 1), nn.ReLU()]
    layers += [linear(len(linears) - 1), bn(len(norms) - 1)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("hidden", [[7, 9], [5], [6, 6, 6]])
def test_stacked_equals_per_step_loop(hidden, generator):
    steps, dim, batch = 4, 3, 16
    stacked = StackedGradientNets(steps, dim, hidden, dtype=torch.float64)
    stacked.reset_parameters(generator)
    loop = [per_step_reference(stacked, s) for s in range(steps)]
    x = torch.randn(batch, steps, dim, generator=generator, dtype=torch.float64) * 3 + 1

    out = stacked(x)  # training mode: batch statistics, running statistics updated
    expected = torch.stack([loop[s](x[:, s]) for s in range(steps)], dim=1)
    torch.testing.assert_close(out, expected)

    # gradients agree too
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(stacked.linears[0].weight.grad[2], loop[2][1].weight.grad.T)
    torch.testing.assert_close(stacked.norms[-1].weight.grad[1], loop[1][-1].weight.grad)

    # running statistics were updated the same way, so inference mode agrees as well
    stacked.eval()
    for net in loop:
        net.eval()
    torch.testing.assert_close(
        stacked(x), torch.stack([loop[s](x[:, s]) for s in range(steps)], dim=1)
    )


def test_steps_are_independent(generator):
    """Changing the input of one time step leaves the other steps' outputs unchanged (eval mode)."""
    stacked = StackedGradientNets(3, 4, [8, 8], dtype=torch.float64)
    stacked.reset_parameters(generator)
    stacked.eval()
    x = torch.randn(5, 3, 4, generator=generator, dtype=torch.float64)
    y = x.clone()
    y[:, 1] += 10.0
    a, b = stacked(x), stacked(y)
    torch.testing.assert_close(a[:, 0], b[:, 0])
    torch.testing.assert_close(a[:, 2], b[:, 2])
    assert not torch.allclose(a[:, 1], b[:, 1])

"""The stacked step networks equal a plain loop of per-step torch.nn networks (bsde.per_step)."""

import pytest
import torch

import bsde
import bsde.networks
from bsde.networks import StackedGradientNets, StackedLinear
from bsde.per_step import PerStepGradientNets


def randomise(stacked: StackedGradientNets, generator: torch.Generator) -> None:
    """Give the zero-initialised last layer, bias and diagonal nonzero values so they are tested too."""
    with torch.no_grad():
        for p in (stacked.linears[-1].weight, stacked.bias, stacked.diagonal):
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))


@pytest.mark.parametrize(("hidden", "dim"), [([7, 9], 3), ([5], 3), ([6, 6, 6], 3), ([4, 4], 9)])
def test_stacked_equals_per_step_loop(hidden, dim, generator):
    """(The last case's first layer, 9 -> 4, is wide: its weights are stored transposed.)"""
    steps, batch = 4, 16
    stacked = StackedGradientNets(steps, dim, hidden, dtype=torch.float64)
    stacked.reset_parameters(generator)
    randomise(stacked, generator)
    loop = PerStepGradientNets(steps, dim, hidden, dtype=torch.float64).load_from_stacked(stacked).nets
    x = torch.randn(batch, steps, dim, generator=generator, dtype=torch.float64) * 3 + 1

    out = stacked(x)  # training mode: batch statistics, running statistics updated
    expected = torch.stack([loop[s](x[:, s]) for s in range(steps)], dim=1)
    torch.testing.assert_close(out, expected)

    # gradients agree too
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(stacked.linears[0].weight.grad[2], loop[2].linears[0].weight.grad.T)
    torch.testing.assert_close(stacked.norms[-1].weight.grad[1], loop[1].norms[-1].weight.grad)
    torch.testing.assert_close(stacked.diagonal.grad[3], loop[3].diagonal.grad)
    torch.testing.assert_close(stacked.bias.grad[0], loop[0].linears[-1].bias.grad)

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
    randomise(stacked, generator)
    stacked.eval()
    x = torch.randn(5, 3, 4, generator=generator, dtype=torch.float64)
    y = x.clone()
    y[:, 1] += 10.0
    a, b = stacked(x), stacked(y)
    torch.testing.assert_close(a[:, 0], b[:, 0])
    torch.testing.assert_close(a[:, 2], b[:, 2])
    assert not torch.allclose(a[:, 1], b[:, 1])


def test_starts_at_the_trivial_solution(generator):
    """Z = 0 at initialisation, but the last layer and the diagonal receive gradients."""
    stacked = StackedGradientNets(3, 4, [8, 8], dtype=torch.float64)
    stacked.reset_parameters(generator)
    x = torch.randn(16, 3, 4, generator=generator, dtype=torch.float64)
    out = stacked(x)
    assert torch.equal(out, torch.zeros_like(out))
    (out * x).sum().backward()
    assert stacked.linears[-1].weight.grad.abs().sum() > 0 and stacked.diagonal.grad.abs().sum() > 0


@pytest.mark.parametrize("batch_stats", [False, True])
def test_one_step_alone_equals_the_stacked_pass(batch_stats, generator):
    """at_step(s, x) is network s of the stacked pass: inference mode, or training mode's batch statistics."""
    steps, dim, batch = 4, 3, 32
    stacked = StackedGradientNets(steps, dim, [7, 9], dtype=torch.float64)
    stacked.reset_parameters(generator)
    randomise(stacked, generator)
    x = torch.randn(batch, steps, dim, generator=generator, dtype=torch.float64) * 2 - 1
    stacked(x)  # move the running statistics away from their start
    stacked.train(batch_stats)
    running = stacked.norms[1].running_mean.clone()
    with torch.no_grad():
        whole = stacked(x) if not batch_stats else None
        if batch_stats:  # the stacked pass in training mode would update the running statistics: compare first
            alone = [stacked.at_step(s, x[:, s], batch_stats=True) for s in range(steps)]
            torch.testing.assert_close(stacked.norms[1].running_mean, running)  # untouched by at_step
            whole = stacked(x)
        else:
            alone = [stacked.at_step(s, x[:, s]) for s in range(steps)]
    torch.testing.assert_close(torch.stack(alone, dim=1), whole)


@pytest.mark.parametrize("hidden", [[7, 9], [5]])
def test_global_batch_norm_on_one_process_equals_torch_batch_norm(hidden, generator):
    """With the identity as the sum over processes, the sums-based norm is torch's: forward, grads, running stats."""
    steps, dim, batch = 4, 3, 16
    fused = StackedGradientNets(steps, dim, hidden, dtype=torch.float64)
    fused.reset_parameters(generator)
    randomise(fused, generator)
    summed = StackedGradientNets(steps, dim, hidden, dtype=torch.float64)
    summed.load_state_dict(fused.state_dict())
    for norm in summed.norms:
        norm.total = lambda tensor: tensor
    x = torch.randn(batch, steps, dim, generator=generator, dtype=torch.float64) * 3 + 10  # off-centre

    for _ in range(2):  # the second pass shifts by the running mean the first one left
        out, expected = summed(x), fused(x)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    out.square().sum().backward()
    expected.square().sum().backward()
    for mine, theirs in zip(summed.parameters(), fused.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-10, atol=1e-12)
    for mine, theirs in zip(summed.buffers(), fused.buffers()):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)
    for step in range(steps):  # one step alone with the batch's statistics (the steering path)
        torch.testing.assert_close(summed.at_step(step, x[:, step], batch_stats=True),
                                   fused.at_step(step, x[:, step], batch_stats=True), rtol=1e-12, atol=1e-12)


def test_folded_step_is_the_step_network_in_inference_mode():
    """Batch norms folded into the dense layers: the same function as at_step in eval mode (float64 rounding),
    and in float32 to float32 rounding; with and without hidden layers."""
    for hidden in ([7, 9], [5], []):
        nets = StackedGradientNets(3, 4, hidden, dtype=torch.float64)
        nets.reset_parameters(torch.Generator().manual_seed(0))
        with torch.no_grad():
            for p in nets.parameters():
                p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(1)))
        nets.train()
        nets(2 * torch.randn(50, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 1)
        nets.eval()
        x = torch.randn(20, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        for step in range(3):
            expected = 2.5 * nets.at_step(step, x)
            assert torch.allclose(nets.folded(step, scale=2.5)(x), expected, atol=1e-12, rtol=0)
            single = nets.folded(step, scale=2.5, dtype=torch.float32)(x.float())
            assert single.dtype == torch.float32
            assert torch.allclose(single.double(), expected, atol=1e-5, rtol=1e-5)


def test_a_wide_input_layer_stores_its_weights_transposed(generator):
    """in > 2 out: W (S, in, out) is a view of an (S, out, in) tensor; forward, both gradients and their second
    derivatives are those of the plain batched matmul, and W's gradient comes in W's own layout (no copy)."""
    wide = StackedLinear(3, 9, 4, dtype=torch.float64)
    wide.reset_parameters(generator)
    assert wide.wide_input and wide.weight.shape == (3, 9, 4) and wide.weight.transpose(1, 2).is_contiguous()
    assert not StackedLinear(3, 8, 4, dtype=torch.float64).wide_input  # in = 2 out: as before
    plain = wide.weight.detach().contiguous().requires_grad_(True)
    h = torch.randn(5, 3, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 3, 4, generator=generator, dtype=torch.float64)
    out = wide(h)
    expected = torch.bmm(h.transpose(0, 1), plain).transpose(0, 1)
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)
    grads = torch.autograd.grad((out * g).sum(), (h, wide.weight))
    expected_grads = torch.autograd.grad((expected * g).sum(), (h, plain))
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    assert grads[1].stride() == wide.weight.stride()
    weight = wide.weight.detach().requires_grad_(True)
    matmul = bsde.networks._WideInputMatmul.apply
    assert torch.autograd.gradgradcheck(matmul, (h.transpose(0, 1)[:2, :3], weight[:2]))


def test_a_wide_input_layer_has_forward_mode_derivatives(generator):
    """torch.func.jvp through the layer (the refit's second-order term takes them of the networks)."""
    wide = StackedLinear(2, 7, 3, dtype=torch.float64)
    wide.reset_parameters(generator)
    h, tangent = (torch.randn(4, 2, 7, generator=generator, dtype=torch.float64) for _ in range(2))
    _, along = torch.func.jvp(wide, (h,), (tangent,))
    torch.testing.assert_close(along, wide(tangent), rtol=1e-14, atol=1e-14)  # linear in h


def test_a_wide_first_layer_trains_as_the_plain_layout(monkeypatch):
    """Training with the first layer's weights transposed (dim 24, widths 6: 24 -> 6 is wide) takes the plain
    layout's steps to rounding: the Adam moments and updates follow each parameter's layout."""
    settings = {"equation.dim": 24, "solver.hidden": [6, 6], "solver.time_steps": 4, "solver.batch_size": 16,
                "solver.valid_size": 16, "solver.iterations": 40, "solver.log_every": 10}
    wide = bsde.solve(bsde.load_problem("hjb", settings), seed=2, device="cpu")
    assert wide.solution.model.nets.linears[0].wide_input
    monkeypatch.setattr(bsde.networks, "WIDE_INPUT", 10**9)
    plain = bsde.solve(bsde.load_problem("hjb", settings), seed=2, device="cpu")
    assert not plain.solution.model.nets.linears[0].wide_input
    for a, b in zip(wide.history, plain.history):
        assert a.loss == pytest.approx(b.loss, rel=1e-9) and a.y0 == pytest.approx(b.y0, rel=1e-9)
    assert wide.history[-1].y0 != wide.history[0].y0
    torch.testing.assert_close(wide.solution.model.nets.linears[0].weight, plain.solution.model.nets.linears[0].weight,
                               rtol=1e-8, atol=1e-10)
    # and the state dicts load into each other (checkpoints of either layout)
    plain.solution.model.load_state_dict(wide.solution.model.state_dict())
    torch.testing.assert_close(plain.solution.model.nets.linears[0].weight, wide.solution.model.nets.linears[0].weight,
                               rtol=0, atol=0)

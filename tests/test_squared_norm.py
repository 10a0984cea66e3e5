"""bsde.squared_norm: |v|^2 with a one-pass backward, against torch's own square().sum(-1)."""

import torch

from bsde.squared_norm import squared_norm


def _v(*shape, requires_grad=True):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(
        requires_grad)


def test_value_matches_sum_of_squares():
    v = _v(4, 3, 7)
    torch.testing.assert_close(squared_norm(v), v.square().sum(-1), rtol=1e-14, atol=0)
    torch.testing.assert_close(squared_norm(v.detach()), v.detach().square().sum(-1), rtol=1e-14, atol=0)


def test_first_and_second_derivatives():
    v = _v(3, 5)
    assert torch.autograd.gradcheck(squared_norm, (v,))
    assert torch.autograd.gradgradcheck(squared_norm, (v,))


def test_gradient_on_a_transposed_view_and_at_zero():
    v = _v(5, 4, 6).transpose(0, 1)  # the networks' (batch, steps, dim) views are transposed
    weights = torch.arange(20, dtype=torch.float64).reshape(4, 5)
    (grad,) = torch.autograd.grad((squared_norm(v) * weights).sum(), v)
    torch.testing.assert_close(grad, 2 * v.detach() * weights.unsqueeze(-1))
    zero = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(squared_norm(zero).sum(), zero)
    assert torch.equal(grad, torch.zeros(2, 3, dtype=torch.float64))


def test_forward_mode_and_vmap():
    v, tangent = _v(4, 3, requires_grad=False), _v(4, 3, requires_grad=False).flip(0)
    value, derivative = torch.func.jvp(squared_norm, (v,), (tangent,))
    torch.testing.assert_close(derivative, 2 * (v * tangent).sum(-1))
    grads = torch.func.vmap(torch.func.grad(lambda row: squared_norm(row)))(v)
    torch.testing.assert_close(grads, 2 * v)

"""bsde.batch_norm against torch.nn.functional.batch_norm (the reference): outputs, gradients, running statistics."""

import pytest
import torch
import torch.nn.functional as F

from bsde.batch_norm import batch_norm, batch_norm_inference


def _input(generator, transposed: bool):
    """(B, S, F) = (6, 3, 4), contiguous or as the transposed view of an (S, B, F) tensor (the networks' layout)."""
    if transposed:
        return (torch.randn(3, 6, 4, generator=generator, dtype=torch.float64) * 2 + 1).transpose(0, 1)
    return torch.randn(6, 3, 4, generator=generator, dtype=torch.float64) * 2 + 1


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_training_mode_matches_torch(transposed, affine):
    generator = torch.Generator().manual_seed(0)
    h = _input(generator, transposed).requires_grad_(True)
    weight = torch.rand(3, 4, generator=generator, dtype=torch.float64, requires_grad=True) if affine else None
    bias = torch.randn(3, 4, generator=generator, dtype=torch.float64, requires_grad=True) if affine else None
    mean, var = torch.randn(12, dtype=torch.float64), torch.rand(12, dtype=torch.float64) + 0.5
    ours_stats, theirs_stats = (mean.clone(), var.clone()), (mean.clone(), var.clone())
    ours = batch_norm(h, weight, bias, *ours_stats, momentum=0.1, eps=1e-6)
    theirs = F.batch_norm(h.reshape(6, 12), *theirs_stats, None if weight is None else weight.reshape(-1),
                          None if bias is None else bias.reshape(-1), True, 0.1, 1e-6).view(6, 3, 4)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert ours.stride() == h.stride()  # the layout is kept: no copy for the next batched matmul
    for a, b in zip(ours_stats, theirs_stats):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(6, 3, 4, generator=generator, dtype=torch.float64)
    inputs = [t for t in (h, weight, bias) if t is not None]
    ours_grads = torch.autograd.grad(ours, inputs, upstream)
    theirs_grads = torch.autograd.grad(theirs, inputs, upstream)
    for a, b in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gradcheck():
    generator = torch.Generator().manual_seed(1)
    h = torch.randn(5, 2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: batch_norm(*t, momentum=0.0, eps=1e-6), (h, weight, bias))


def test_inference_mode_matches_torch():
    generator = torch.Generator().manual_seed(2)
    h = _input(generator, True)
    weight, bias = torch.rand(3, 4, generator=generator, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    mean, var = torch.randn(3, 4, dtype=torch.float64), torch.rand(3, 4, dtype=torch.float64) + 0.5
    theirs = F.batch_norm(h.reshape(6, 12), mean.reshape(-1), var.reshape(-1), weight.reshape(-1), bias.reshape(-1),
                          False, 0.0, 1e-6).view(6, 3, 4)
    torch.testing.assert_close(batch_norm_inference(h, weight, bias, mean, var, eps=1e-6), theirs)
    plain = F.batch_norm(h.reshape(6, 12), mean.reshape(-1), var.reshape(-1), None, None, False, 0.0, 1e-6)
    torch.testing.assert_close(batch_norm_inference(h, None, None, mean, var, eps=1e-6), plain.view(6, 3, 4))


def test_a_batch_of_one_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        batch_norm(torch.ones(1, 3), None, None, momentum=0.1, eps=1e-6)


def test_without_grad_the_same_values_and_running_statistics():
    generator = torch.Generator().manual_seed(3)
    h = _input(generator, True)
    weight, bias = torch.rand(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    stats = [(torch.zeros(12, dtype=torch.float64), torch.ones(12, dtype=torch.float64)) for _ in range(2)]
    recorded = batch_norm(h, weight.requires_grad_(True), bias, *stats[0], momentum=0.1, eps=1e-6)
    with torch.no_grad():
        plain = batch_norm(h, weight, bias, *stats[1], momentum=0.1, eps=1e-6)
    assert plain.grad_fn is None and recorded.grad_fn is not None
    torch.testing.assert_close(plain, recorded.detach(), rtol=0, atol=0)
    for a, b in zip(*stats):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

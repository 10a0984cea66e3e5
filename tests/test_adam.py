"""bsde.adam.Adam against torch.optim.Adam (the independent reference): same update, fused or not, and resumable."""

import pytest
import torch

from bsde.adam import Adam
from bsde.runtime import fused_adam


def _problem(seed: int = 0):
    """A few parameters of different shapes (one left without a gradient) and a loss with curvature."""
    generator = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=torch.float64))
              for shape in ((3, 4), (5,), ())]
    frozen = torch.nn.Parameter(torch.ones(2, dtype=torch.float64), requires_grad=False)
    target = torch.randn(3, 4, generator=generator, dtype=torch.float64)

    def loss():
        a, b, c = params
        return ((a - target) ** 4).sum() + (b.exp() * c).sum() + c**2

    return params, frozen, loss


def _run(optimizer_of, steps: int, rates=(0.05,)):
    params, frozen, loss = _problem()
    optimizer = optimizer_of(params + [frozen])
    for k in range(steps):
        lr = rates[k % len(rates)]
        if isinstance(optimizer, Adam):
            optimizer.lr = lr
        else:
            for group in optimizer.param_groups:
                group["lr"] = lr
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    return [p.detach().clone() for p in params], optimizer


@pytest.mark.parametrize("fused", [False, True])
def test_same_update_as_torch_adam(fused):
    if fused and not fused_adam("cpu"):
        pytest.skip("this torch has no fused Adam on CPU")
    rates = (0.05, 0.01, 0.002)  # the learning rate changes between steps, as the trainer's schedule does
    ours, _ = _run(lambda p: Adam(p, lr=rates[0], eps=1e-8, fused=fused), 25, rates)
    theirs, _ = _run(lambda p: torch.optim.Adam([q for q in p if q.requires_grad], lr=rates[0], eps=1e-8,
                                                foreach=False), 25, rates)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert not torch.equal(ours[0], _problem()[0][0])  # it moved


@pytest.mark.parametrize("fused", [False, True])
def test_updates_during_backward_take_the_same_trajectory(fused):
    """The largest parameter updated by its gradient hook, the rest (one without a gradient) by step()."""
    if fused and not fused_adam("cpu"):
        pytest.skip("this torch has no fused Adam on CPU")
    rates = (0.05, 0.01)
    plain, _ = _run(lambda p: Adam(p, lr=rates[0], fused=fused), 9, rates)
    updated = []

    def early(params):
        optimizer = Adam(params, lr=rates[0], fused=fused)
        optimizer.update_during_backward(share=0.5)  # the (3, 4) matrix: 12 of 18 elements
        params[0].register_post_accumulate_grad_hook(lambda p: updated.append(p.grad is None))
        return optimizer

    ours, optimizer = _run(early, 9, rates)
    # the matrix was updated (and its gradient dropped) in the hook, at every step
    assert optimizer._early == {0} and len(updated) == 9 and all(updated)
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("fused", [False, True])
def test_a_parameter_laid_out_transposed_takes_the_same_update(fused):
    """A transposed view as the parameter (the networks' wide first layer), its gradient set by autograd in the
    same layout or by hand in another: the update is the contiguous parameter's."""
    if fused and not fused_adam("cpu"):
        pytest.skip("this torch has no fused Adam on CPU")
    values = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain = torch.nn.Parameter(values.clone())
    transposed = torch.nn.Parameter(values.transpose(1, 2).contiguous().transpose(1, 2))
    optimizers = [Adam([p], lr=0.1, fused=fused) for p in (plain, transposed)]
    for step in range(4):
        for p, optimizer in zip((plain, transposed), optimizers):
            optimizer.zero_grad()
            ((p - target) ** 3).sum().backward()
            if step == 3 and p is transposed:  # by hand, contiguous: unlike the parameter
                p.grad = p.grad.contiguous()
            optimizer.step()
    assert transposed.stride() == (35, 1, 7) and not torch.equal(plain.detach(), values)
    torch.testing.assert_close(transposed.detach(), plain.detach(), rtol=0, atol=1e-15)


def test_state_dict_resumes_the_same_trajectory():
    whole, _ = _run(lambda p: Adam(p, lr=0.05), 12)
    params, frozen, loss = _problem()
    first = Adam(params + [frozen], lr=0.05)
    for _ in range(5):
        first.zero_grad()
        loss().backward()
        first.step()
    saved = first.state_dict()
    second = Adam(params, lr=1.0)
    second.load_state_dict(saved)
    assert second.steps == 5 and second.lr == 0.05
    for _ in range(7):
        second.zero_grad()
        loss().backward()
        second.step()
    for a, b in zip(params, whole):
        torch.testing.assert_close(a.detach(), b, rtol=0, atol=0)


def test_rejects_a_state_of_other_parameters():
    params, _, _ = _problem()
    with pytest.raises(ValueError, match="3 parameters"):
        Adam(params[:2], lr=0.1).load_state_dict(Adam(params, lr=0.1).state_dict())


def test_first_solve_does_not_import_dynamo(tmp_path):
    """torch.optim imports torch._dynamo (about 1 s); training must not pay for it unless it compiles."""
    import subprocess
    import sys

    code = ("import sys, bsde; p = bsde.load_problem('hjb', {'equation.dim': 2, 'solver.iterations': 3, "
            "'solver.time_steps': 3, 'solver.batch_size': 8, 'solver.valid_size': 8}); "
            "from bsde.trainer import train; import torch; "
            "train(p.equation, p.solver, generator=torch.Generator().manual_seed(0), device=torch.device('cpu')); "
            "print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=tmp_path)  # not the checkout, whose bsde/ lacks the mapped problems
    assert done.stdout.strip() == "False"

"""Adam on a fixed list of parameters, one fused kernel per step where torch has one.

m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,  p -= lr (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps)
at step k: the update of ``torch.optim.Adam`` (no weight decay, no amsgrad). Why not that class:
using it imports ``torch._dynamo`` (about 1 s, the largest one-time cost of a first solve in a
process), and its ``step`` spends more time in Python than the fused kernel takes at our sizes.

``update_during_backward`` moves the update of the largest parameters into the backward pass, right
after each one's gradient is complete: the update then reads that gradient (and the parameter)
while they are still in cache, and the gradient is freed at once.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from bsde.runtime import fused_adam


class Adam:
    """Adam with a settable ``lr``; ``fused`` None: the fused kernel where :func:`bsde.runtime.fused_adam` says."""

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, fused: bool | None = None):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("Adam needs at least one parameter that requires grad")
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.fused = fused_adam(self.params[0].device) if fused is None else fused
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        #: per parameter, the order of its axes that is contiguous in memory (None: as it is); the update runs
        #: on those views (the same elements), as torch's fused kernel copies a non-contiguous tensor in and out
        self._orders = [_memory_order(p) for p in self.params]
        # the fused kernel reads each parameter's step count from a float32 tensor (torch.optim's layout): here
        # views of one tensor, all equal to the step being taken, so that one fill sets them
        self._counts = torch.zeros(len(self.params), dtype=torch.float32, device=self.params[0].device)
        self._step_counts = list(self._counts.unbind())
        self._early: set[int] = set()  # parameters updated during backward (indices into params)
        self._done: set[int] = set()  # of those, the ones already updated in the current step
        self._hooks: list[Any] = []

    def update_during_backward(self, share: float = 1 / 16) -> None:
        """From now on, update each parameter holding at least ``share`` of all parameter elements as soon as
        backward has accumulated its gradient (then drop that gradient); ``step`` after the backward updates the
        rest, and any of those that got no gradient (as g = 0). For one plain backward per step: not where
        gradients change after it (a data-parallel all-reduce, clipping), and a loss check must come before it."""
        total = sum(p.numel() for p in self.params)
        for index, param in enumerate(self.params):
            if index not in self._early and param.numel() >= share * total:
                self._early.add(index)
                self._hooks.append(param.register_post_accumulate_grad_hook(
                    lambda p, index=index: self._update_early(index)))

    def stop_updating_during_backward(self) -> None:
        """Remove the hooks of :meth:`update_during_backward`: from now on ``step`` updates every parameter."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        self._early.clear()
        self._done.clear()

    def _update_early(self, index: int) -> None:
        if index not in self._done:  # one backward per step: a second one's gradient stays in .grad, unused
            self._done.add(index)
            self._update([index], self.steps + 1)
            self.params[index].grad = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One update from the parameters' ``.grad`` (a parameter without a gradient counts as g = 0), of those
        not already updated during the backward."""
        rest = [i for i in range(len(self.params)) if i not in self._done]
        self._done.clear()
        self.steps += 1
        if rest:
            self._update(rest, self.steps)

    @torch.no_grad()
    def _update(self, indices: list[int], steps: int) -> None:
        """Step ``steps`` of the parameters ``indices``."""
        def in_order(i: int, tensor: torch.Tensor) -> torch.Tensor:
            return tensor if self._orders[i] is None else tensor.permute(self._orders[i])

        params, exp_avg, exp_avg_sq, grads = [], [], [], []
        for i in indices:
            p = self.params[i]
            # a gradient laid out unlike its parameter (one set by hand; autograd's follow the parameter's layout)
            # is copied into the parameter's layout: the fused kernel would apply it to the wrong elements
            g = torch.zeros_like(p) if p.grad is None else p.grad
            g = g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)
            for values, tensor in ((params, p), (exp_avg, self.exp_avg[i]), (exp_avg_sq, self.exp_avg_sq[i]),
                                   (grads, g)):
                values.append(in_order(i, tensor))
        if self.fused:
            self._counts.fill_(steps)
            counts = [self._step_counts[i] for i in indices]
            torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], counts, lr=self.lr, beta1=self.beta1,
                               beta2=self.beta2, weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
            return
        torch._foreach_lerp_(exp_avg, grads, 1 - self.beta1)
        torch._foreach_mul_(exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - self.beta2)
        step_size = self.lr / (1 - self.beta1**steps)
        denominator = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denominator, math.sqrt(1 - self.beta2**steps))
        torch._foreach_add_(denominator, self.eps)
        torch._foreach_addcdiv_(params, exp_avg, denominator, -step_size)

    def state_dict(self) -> dict[str, Any]:
        """Copies of the moments and the step count (for checkpoints)."""
        return {"steps": self.steps, "lr": self.lr, "exp_avg": [m.clone() for m in self.exp_avg],
                "exp_avg_sq": [v.clone() for v in self.exp_avg_sq]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["exp_avg"]) != len(self.params) or len(state["exp_avg_sq"]) != len(self.params):
            raise ValueError(f"Adam state for {len(state['exp_avg'])} parameters, this optimizer has {len(self.params)}")
        self.steps, self.lr = int(state["steps"]), float(state["lr"])
        self._done.clear()
        with torch.no_grad():
            for target, source in zip([*self.exp_avg, *self.exp_avg_sq], [*state["exp_avg"], *state["exp_avg_sq"]]):
                target.copy_(source)


def _memory_order(tensor: torch.Tensor) -> tuple[int, ...] | None:
    """The order of ``tensor``'s axes in which it is contiguous (a transposed view of a contiguous tensor: the
    reverse transpose); None where it is contiguous already or no order is (a tensor with gaps)."""
    if tensor.is_contiguous():
        return None
    order = tuple(sorted(range(tensor.ndim), key=lambda axis: -tensor.stride(axis)))
    return order if tensor.permute(order).is_contiguous() else None

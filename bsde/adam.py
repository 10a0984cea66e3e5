"""Adam on a fixed list of parameters, one fused kernel per step where torch has one.

m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,  p -= lr (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps)
at step k: the update of ``torch.optim.Adam`` (no weight decay, no amsgrad). Why not that class:
using it imports ``torch._dynamo`` (about 1 s, the largest one-time cost of a first solve in a
process), and its ``step`` spends more time in Python than the fused kernel takes at our sizes.
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
        # the fused kernel reads the step count from one float32 tensor per parameter (torch.optim's layout)
        self._step_counts = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update from the parameters' ``.grad`` (a parameter without a gradient counts as g = 0)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.steps += 1
        if self.fused:
            torch._foreach_add_(self._step_counts, 1.0)
            torch._fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq, [], self._step_counts, lr=self.lr,
                               beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps, amsgrad=False,
                               maximize=False)
            return
        torch._foreach_lerp_(self.exp_avg, grads, 1 - self.beta1)
        torch._foreach_mul_(self.exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - self.beta2)
        step_size = self.lr / (1 - self.beta1**self.steps)
        denominator = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denominator, math.sqrt(1 - self.beta2**self.steps))
        torch._foreach_add_(denominator, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denominator, -step_size)

    def state_dict(self) -> dict[str, Any]:
        """Copies of the moments and the step count (for checkpoints)."""
        return {"steps": self.steps, "lr": self.lr, "exp_avg": [m.clone() for m in self.exp_avg],
                "exp_avg_sq": [v.clone() for v in self.exp_avg_sq]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["exp_avg"]) != len(self.params) or len(state["exp_avg_sq"]) != len(self.params):
            raise ValueError(f"Adam state for {len(state['exp_avg'])} parameters, this optimizer has {len(self.params)}")
        self.steps, self.lr = int(state["steps"]), float(state["lr"])
        with torch.no_grad():
            for target, source in zip([*self.exp_avg, *self.exp_avg_sq], [*state["exp_avg"], *state["exp_avg_sq"]]):
                target.copy_(source)
            for count in self._step_counts:
                count.fill_(float(self.steps))

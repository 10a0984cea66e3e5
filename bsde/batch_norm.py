"""Batch norm over the leading (batch) axis of a tensor of any shape and strides, by plain reductions.

y = (h - mean) / sqrt(var + eps) * weight + bias, mean and var over axis 0 (var biased; the running
variance takes the unbiased one, as torch's). Why not ``torch.nn.functional.batch_norm``: on the CPU
its kernel for (batch, channels) input is about 40x slower than a vectorized reduction over the
batch at the networks' sizes (64 x 2,090), and it needs a contiguous (batch, channels) copy of the
stacked networks' (batch, steps, features) activations, which are transposed views of the batched
matmuls' output. Here every operation keeps the input's memory layout, and the backward is written
out (5 passes) instead of recorded op by op.
"""

from __future__ import annotations

import torch


def _normalize(h, weight, bias, running_mean, running_var, momentum: float, eps: float, *, keep: bool = True):
    """(y, h - mean, 1 / sqrt(var + eps)), the running statistics updated in place; without ``keep``
    y is written over h - mean (which is then not returned)."""
    n = h.shape[0]
    mean = h.mean(0)
    centered = h - mean
    var = centered.square().mean(0)
    invstd = torch.rsqrt(var + eps)
    if running_mean is not None:
        running_mean.lerp_(mean.reshape(running_mean.shape), momentum)
        running_var.lerp_(var.reshape(running_var.shape) * (n / (n - 1)), momentum)
    scale = invstd if weight is None else invstd * weight
    if not keep:
        y = centered.mul_(scale) if weight is None else torch.addcmul(bias, centered, scale, out=centered)
        return y, None, invstd
    y = centered * scale if weight is None else torch.addcmul(bias, centered, scale)
    return y, centered, invstd


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, running_mean, running_var, momentum: float, eps: float):
        y, centered, invstd = _normalize(h, weight, bias, running_mean, running_var, momentum, eps)
        ctx.save_for_backward(centered, invstd, weight)
        return y

    @staticmethod
    def backward(ctx, dy):
        # with c = h - mean, s = invstd: dbias = sum dy, dweight = s sum dy c,
        # dh = w s (dy - mean(dy) - c s^2 mean(dy c))
        centered, invstd, weight = ctx.saved_tensors
        n = dy.shape[0]
        dbias = dy.sum(0)
        dyc = (dy * centered).sum(0)
        dh = None
        if ctx.needs_input_grad[0]:  # dh = k dy + k2 c + k3: two passes over dy and c
            k = invstd if weight is None else invstd * weight
            dh = torch.addcmul(k * dbias / -n, dy, k).addcmul_(centered, k * invstd * invstd * dyc / -n)
        dweight = dyc * invstd if ctx.needs_input_grad[1] else None
        return dh, dweight, dbias if ctx.needs_input_grad[2] else None, None, None, None, None


def batch_norm(h: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
               running_mean: torch.Tensor | None = None, running_var: torch.Tensor | None = None, *,
               momentum: float, eps: float) -> torch.Tensor:
    """Training mode: normalise h (B, ...) with its own batch statistics; ``weight``/``bias`` shaped h[0] (or None);
    the running statistics (flat or shaped h[0]) move by ``momentum`` towards the batch's, in place."""
    if h.shape[0] < 2:
        raise ValueError(f"batch norm needs a batch of at least 2, got {h.shape[0]}")
    if not torch.is_grad_enabled() or (weight is None and not h.requires_grad):  # no graph to record: the
        # controlled paths' per-step norms, and the input norm of the networks (the paths need no gradient)
        with torch.no_grad():
            return _normalize(h, weight, bias, running_mean, running_var, momentum, eps, keep=False)[0]
    return _BatchNorm.apply(h, weight, bias, running_mean, running_var, momentum, eps)


def batch_norm_inference(h: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                         mean: torch.Tensor, var: torch.Tensor, *, eps: float) -> torch.Tensor:
    """Inference mode: normalise h (B, ...) with given statistics (shaped h[0]), one pass over h."""
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    return torch.addcmul(shift, h, scale)

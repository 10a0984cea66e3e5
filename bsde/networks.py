"""Gradient networks for all time steps at once.

The paper uses one small network per time step t_1..t_{N-1}:
bn -> (dense -> bn -> relu) x L -> dense -> bn (StackedGradientNets says where ours differs).
The paths do not depend on the networks, so all S = N - 1 steps are evaluated together: a
layer's S weight matrices are stacked into one (S, in, out) tensor applied by a single batched
matmul, and batch norm runs once over the batch axis of the (batch, S, features) activations,
i.e. with separate statistics (and affine parameters, where it has them) per step and feature.
Activations are (batch, S, features) views of the matmuls' (S, batch, features) output: batch
norm (:mod:`bsde.batch_norm`) reduces over the leading axis in any layout, so no copies are made.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from bsde.batch_norm import batch_norm, batch_norm_inference

BN_EPS = 1e-6
BN_MOMENTUM = 0.01  # torch convention: running = (1 - m) running + m batch (TF's momentum 0.99)


#: sums a tensor over the processes of a data-parallel run (and its gradient likewise); see bsde.distributed
Total = Callable[[torch.Tensor], torch.Tensor]


def global_batch_norm(x: torch.Tensor, shift: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                      total: Total, *, running: tuple[torch.Tensor, torch.Tensor] | None = None,
                      momentum: float = 0.0) -> torch.Tensor:
    """Batch norm of x (n, C) with the mean and variance of the global batch, from one ``total`` of
    (count, sum, sum of squares) of x - shift (a constant the same on every process, against cancellation).

    Differentiable (the backward pass sums through ``total`` too); updates ``running`` (mean, var) as
    F.batch_norm does: running = (1 - momentum) running + momentum * (mean, unbiased variance).
    """
    features = x.shape[1]
    centred = x - shift
    sums = total(torch.cat([x.new_full((1,), x.shape[0]), centred.sum(0), centred.square().sum(0)]))
    count, centred_mean = sums[0], sums[1:features + 1] / sums[0]
    var = (sums[features + 1:] / count - centred_mean.square()).clamp(min=0.0)
    mean = shift + centred_mean
    if running is not None:
        with torch.no_grad():
            running[0].lerp_(mean, momentum)
            running[1].lerp_(var * (count / (count - 1).clamp(min=1.0)), momentum)
    out = (x - mean) * torch.rsqrt(var + BN_EPS)
    return out if weight is None else torch.addcmul(bias, out, weight)


class StackedBatchNorm(nn.Module):
    """Batch norm of h (B, S, F) over the batch axis, per step s and feature f.

    With ``total`` set (a data-parallel run, see bsde.distributed), the statistics in training are those
    of the global batch over all processes; otherwise :func:`bsde.batch_norm.batch_norm` on the local batch.
    """

    def __init__(self, steps: int, features: int, *, dtype: torch.dtype, device=None, affine: bool = True):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(steps, features, **kw)) if affine else None
        self.bias = nn.Parameter(torch.empty(steps, features, **kw)) if affine else None
        self.features = features
        self.total: Total | None = None
        self.register_buffer("running_mean", torch.zeros(steps * features, **kw))
        self.register_buffer("running_var", torch.ones(steps * features, **kw))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Init of the reference code: gamma ~ U(0.1, 0.5), beta ~ N(0, 0.1^2)."""
        with torch.no_grad():
            if self.weight is not None:
                self.weight.copy_(uniform(self.weight.shape, 0.1, 0.5, generator, self.weight))
                self.bias.copy_(torch.randn(self.bias.shape, generator=generator, dtype=self.bias.dtype,
                                            device=self.bias.device) * 0.1)
            self.running_mean.zero_()
            self.running_var.fill_(1.0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, S, F), any strides (the output keeps them, outside data-parallel runs)."""
        if self.training and self.total is not None:
            weight, bias = (None, None) if self.weight is None else (self.weight.reshape(-1), self.bias.reshape(-1))
            flat = global_batch_norm(h.reshape(h.shape[0], -1), self.running_mean.detach().clone(), weight, bias,
                                     self.total, running=(self.running_mean, self.running_var), momentum=BN_MOMENTUM)
            return flat.view(h.shape)
        if self.training:
            return batch_norm(h, self.weight, self.bias, self.running_mean, self.running_var, momentum=BN_MOMENTUM,
                              eps=BN_EPS)
        shape = h.shape[1:]
        return batch_norm_inference(h, self.weight, self.bias, self.running_mean.view(shape),
                                    self.running_var.view(shape), eps=BN_EPS)

    def at_step(self, step: int, h: torch.Tensor, batch_stats: bool = False) -> torch.Tensor:
        """The norm of step ``step`` alone on h (B, F): with the batch's statistics (running ones untouched)
        or, by default, with the running statistics (inference)."""
        weight, bias = (None, None) if self.weight is None else (self.weight[step], self.bias[step])
        rows = slice(step * self.features, (step + 1) * self.features)
        if batch_stats and self.total is not None:
            return global_batch_norm(h, self.running_mean[rows].detach(), weight, bias, self.total)
        # one step's (B, F) block: torch's kernel, one call (bsde.batch_norm pays off on the stacked (B, S, F) tensor),
        # without F.batch_norm's Python checks (the per-step loop of the steered paths calls this 3 (N - 1) times)
        if batch_stats:
            return torch.batch_norm(h, weight, bias, None, None, True, 0.0, BN_EPS, torch.backends.cudnn.enabled)
        return torch.batch_norm(h, weight, bias, self.running_mean[rows], self.running_var[rows], False, 0.0, BN_EPS,
                                torch.backends.cudnn.enabled)


#: a stacked layer whose input is more than this many times as wide as its output keeps its weights in the
#: transposed layout (see StackedLinear): the first layer from d = 221 on, at the default width d + 10
WIDE_INPUT = 2


def wide_input(fan_in: int, fan_out: int) -> bool:
    """Whether a stacked layer fan_in -> fan_out keeps its weights transposed: fan_in > WIDE_INPUT fan_out."""
    return fan_in > WIDE_INPUT * fan_out


class _WideInputMatmul(torch.autograd.Function):
    """h (S, B, in) @ W (S, in, out) for a W laid out as (S, out, in) in memory, whose gradient h^T g is computed
    as (g^T h)^T: in W's own layout, where autograd's h^T g comes out (S, in, out) and is then copied over."""

    generate_vmap_rule = True

    @staticmethod
    def forward(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.bmm(h, weight)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, weight = ctx.saved_tensors
        grad_h = torch.bmm(grad, weight.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_weight = torch.bmm(grad.transpose(1, 2), h).transpose(1, 2) if ctx.needs_input_grad[1] else None
        return grad_h, grad_weight


class _WideInputMatmulForwardMode(_WideInputMatmul):
    """The same with forward-mode derivatives (torch.func.jvp), which torch.compile cannot trace (it would break
    the compiled graph there): the eager one."""

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def jvp(ctx, h_tangent, weight_tangent) -> torch.Tensor:
        h, weight = ctx.saved_tensors
        terms = [torch.bmm(a, b) for a, b in ((h_tangent, weight), (h, weight_tangent))
                 if a is not None and b is not None]
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]


class StackedLinear(nn.Module):
    """h (B, S, in) -> h[:, s] @ W_s  (B, S, out); no bias (a batch norm follows).

    W is (S, in, out). Where in > WIDE_INPUT out (the first layer at large d), W is a transposed view of an
    (S, out, in) tensor: the CPU's batched matmuls at those shapes, h @ W forward and the weight gradient
    backward (by _WideInputMatmul), both run about 1.3x faster than with the (S, in, out) layout (d = 1000-10,000,
    float64, 2 cores). Its values, shape, state_dict and checkpoints are the same either way.
    """

    def __init__(self, steps: int, fan_in: int, fan_out: int, *, dtype: torch.dtype, device=None):
        super().__init__()
        self.wide_input = wide_input(fan_in, fan_out)
        kw = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.empty(steps, fan_out, fan_in, **kw).transpose(1, 2) if self.wide_input
                                   else torch.empty(steps, fan_in, fan_out, **kw))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Glorot uniform, as Keras' Dense default."""
        fan_in, fan_out = self.weight.shape[1:]
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        with torch.no_grad():
            self.weight.copy_(uniform(self.weight.shape, -bound, bound, generator, self.weight))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.wide_input and torch.is_grad_enabled() and self.weight.requires_grad:
            matmul = _WideInputMatmul if torch.compiler.is_compiling() else _WideInputMatmulForwardMode
            return matmul.apply(h.transpose(0, 1), self.weight).transpose(0, 1)
        return torch.bmm(h.transpose(0, 1), self.weight).transpose(0, 1)


class StackedGradientNets(nn.Module):
    """S per-step networks R^d -> R^d evaluated in one pass: (B, S, d) -> (B, S, d).

    Per step n: x^ = bn(x) (no affine), h = relu(bn(x^ W_1)), ..., out = h W_L + b + a * x^.
    Changes to the paper's net, the first two measured to matter at d = 100: the last layer has a
    bias instead of a batch norm and starts at zero, so Z starts at the trivial solution Z = 0
    with live gradients (a final batch norm's scale collapses towards 0 and starves the hidden
    layers); and a diagonal term a * x^ (zero at the start) learns the leading, nearly linear
    part of Z quickly, with 2 d parameters per step instead of d^2. The input norm drops its scale
    and shift, which the first layer and the output bias absorb anyway.
    """

    def __init__(self, steps: int, dim: int, hidden: list[int], *, dtype: torch.dtype, device=None):
        super().__init__()
        widths = [dim, *hidden, dim]
        kw = {"dtype": dtype, "device": device}
        self.steps, self.dim = steps, dim
        # the input norm has no scale and shift: the first layer and the output bias absorb them, and without
        # them no gradient has to flow back into the input (one batched matmul less per iteration)
        self.norms = nn.ModuleList(StackedBatchNorm(steps, w, **kw, affine=i > 0) for i, w in enumerate(widths[:-1]))
        self.linears = nn.ModuleList(StackedLinear(steps, a, b, **kw) for a, b in zip(widths, widths[1:]))
        #: the hidden layers' (linear, norm) pairs, made once: slicing a ModuleList builds a new one on every
        #: call, which the per-step loop of the steered paths would pay 2 (N - 1) times an iteration
        self.hidden = tuple(zip(self.linears[:-1], self.norms[1:]))
        self.bias = nn.Parameter(torch.zeros(steps, dim, **kw))
        self.diagonal = nn.Parameter(torch.zeros(steps, dim, **kw))

    def reset_parameters(self, generator: torch.Generator) -> None:
        for module in (*self.norms, *self.linears):
            module.reset_parameters(generator)
        with torch.no_grad():
            self.linears[-1].weight.zero_()
            self.bias.zero_()
            self.diagonal.zero_()

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``scale`` times the networks' output; the last layer, its bias and the diagonal term are one batched
        multiply-add and one in-place multiply-add, then one in-place scaling: the backward scales the output's
        gradient once, where scale factors inside the multiply-adds would each cost a pass over a gradient."""
        x_hat = h = self.norms[0](x)
        for linear, norm in self.hidden:
            h = norm(linear(h)).relu_()  # in place: the norm keeps no reference to its output
        out = torch.baddbmm(self.bias.unsqueeze(1), h.transpose(0, 1), self.linears[-1].weight)  # (S, B, d)
        out = out.addcmul_(self.diagonal.unsqueeze(1), x_hat.transpose(0, 1))
        return (out.mul_(scale) if scale != 1.0 else out).transpose(0, 1)

    def at_step(self, step: int, x: torch.Tensor, batch_stats: bool = False, scale: float = 1.0) -> torch.Tensor:
        """``scale`` times network ``step`` alone on x (B, d): what forward gives at that step (in eval mode unless
        ``batch_stats``)."""
        x_hat = h = self.norms[0].at_step(step, x, batch_stats)
        for linear, norm in self.hidden:
            h = norm.at_step(step, h @ linear.weight[step], batch_stats).relu_()
        return torch.addmm(self.bias[step], h, self.linears[-1].weight[step], beta=scale, alpha=scale).addcmul_(
            self.diagonal[step], x_hat, value=scale)

    def folded(self, step: int, *, scale: float = 1.0, dtype: torch.dtype | None = None) -> FoldedStep:
        """Network ``step`` in inference mode as plain affine maps (batch norms folded into the dense layers),
        its output multiplied by ``scale``: the same function as ``at_step`` with fewer operations per call."""
        with torch.no_grad():
            first = self.norms[0]
            rows = slice(step * self.dim, (step + 1) * self.dim)
            inv = (first.running_var[rows] + BN_EPS).rsqrt()  # x_hat = (x - mean) * inv
            shift = -first.running_mean[rows] * inv
            layers, weight, bias = [], torch.diag(inv), shift  # the map from x to the current layer's input
            for linear, norm in self.hidden:
                rows = slice(step * norm.features, (step + 1) * norm.features)
                gain = norm.weight[step] * (norm.running_var[rows] + BN_EPS).rsqrt()
                w = weight @ linear.weight[step] * gain
                c = (bias @ linear.weight[step] - norm.running_mean[rows]) * gain + norm.bias[step]
                layers.append((w, c))
                weight, bias = torch.eye(norm.features, dtype=w.dtype, device=w.device), torch.zeros_like(c)
            out_weight = scale * (weight @ self.linears[-1].weight[step])
            out_bias = scale * (bias @ self.linears[-1].weight[step] + self.bias[step] + self.diagonal[step] * shift)
            diagonal = scale * self.diagonal[step] * inv
            cast = (lambda t: t.to(dtype).contiguous()) if dtype is not None else (lambda t: t.contiguous())
            return FoldedStep([(cast(w), cast(c)) for w, c in layers], cast(out_weight), cast(out_bias), cast(diagonal))


class FoldedStep:
    """One step network in inference mode: h <- relu(h W + c) per hidden layer, out = h W_L + b + a * x."""

    def __init__(self, hidden: list[tuple[torch.Tensor, torch.Tensor]], weight: torch.Tensor, bias: torch.Tensor,
                 diagonal: torch.Tensor):
        self.hidden, self.weight, self.bias, self.diagonal = hidden, weight, bias, diagonal

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for w, c in self.hidden:
            h = torch.addmm(c, h, w).relu_()
        return torch.addmm(self.bias, h, self.weight).addcmul_(self.diagonal, x)


def uniform(shape, low: float, high: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """U(low, high) samples shaped ``shape``, on ``like``'s device and dtype."""
    return torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device) * (high - low) + low

"""Multilevel Picard (MLP) approximation for drivers f(t, x, y) without z.

U_{n,M}(t,x) = M^{-n} sum_i g(X^i_T) + sum_{l<n} (T-t) M^{l-n} sum_i [f(U_l)(R_i, X_{R_i}) - f(U_{l-1})(R_i, X_{R_i})],
R_i ~ U[t, T], U_0 = 0, fresh randomness per term (E, Hutzenthaler, Jentzen, Kruse, J. Sci. Comput. 79 (2019);
Hutzenthaler, Jentzen, Kruse, Nguyen, von Wurstemberger, Proc. R. Soc. A 476 (2020)).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING, Callable

import torch

from bsde.equations.base import Equation
from bsde.errors import ProblemError
from bsde.reference.result import ReferenceResult
from bsde.reference.sampling import DEVICE, Progress, chunk_rows
from bsde.reference.shards import each_shard, shard_sizes

if TYPE_CHECKING:
    from bsde.distributed import Group

DEFAULT_LEVEL = 5
DEFAULT_REPEATS = 10
#: the lower level's repeats draw from seed + this (streams of their own), this many times as many (it costs
#: about 1/(3M) of the top level per repeat, so its mean is not what limits the bias estimate)
LOWER_SEED, LOWER_REPEATS = 1_000_003, 10


class _Picard:
    """U_{n,M} evaluated for a batch of points (t (B,), x (B, dim)), vectorised over the samples."""

    def __init__(self, equation: Equation, samples: int, generator: torch.Generator):
        self.eq, self.m, self.gen = equation, samples, generator
        self.cap = chunk_rows(equation.dim)

    def _forward(self, x: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """X at times end (B, k) from x (B, dim) at times start (B,): (B, k, dim)."""
        normals = torch.randn(*end.shape, x.shape[-1], generator=self.gen, dtype=x.dtype, device=x.device)
        return self.eq.process.transition(x.unsqueeze(1), end - start.unsqueeze(1), normals)

    def _f(self, t: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.eq.driver(t, x, y, torch.zeros(1, dtype=x.dtype, device=x.device).expand_as(x))

    def _mean(self, term: Callable[[int], torch.Tensor], count: int, batch: int) -> torch.Tensor:
        """(1/count) sum of ``count`` samples of term(k) (B, k), drawn in chunks of at most cap/B."""
        chunk = max(1, self.cap // batch)
        total, done = torch.zeros(batch, dtype=torch.float64, device=DEVICE), 0
        while done < count:
            k = min(chunk, count - done)
            total += term(k).sum(-1)
            done += k
        return total / count

    def __call__(self, level: int, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        batch = t.shape[0]
        if level == 0:
            return torch.zeros(batch, dtype=torch.float64, device=t.device)
        block = max(1, self.cap // self.m ** level)
        if batch > block:
            return torch.cat([self(level, t[i:i + block], x[i:i + block]) for i in range(0, batch, block)])
        total_time = self.eq.total_time
        remaining = total_time - t
        end = torch.full((batch, 1), total_time, dtype=torch.float64, device=t.device)

        def terminal(k: int) -> torch.Tensor:
            return self.eq.terminal(self._forward(x, t, end.expand(batch, k)))

        out = self._mean(terminal, self.m ** level, batch)
        for lower in range(level):
            def picard(k: int, lower: int = lower) -> torch.Tensor:
                times = t.unsqueeze(1) + remaining.unsqueeze(1) * torch.rand(batch, k, generator=self.gen,
                                                                            dtype=torch.float64, device=t.device)
                flat_t, flat_x = times.reshape(-1), self._forward(x, t, times).reshape(batch * k, -1)
                value = self._f(flat_t, flat_x, self(lower, flat_t, flat_x))
                if lower > 0:
                    value = value - self._f(flat_t, flat_x, self(lower - 1, flat_t, flat_x))
                return value.reshape(batch, k)

            out = out + remaining * self._mean(picard, self.m ** (level - lower), batch)
        return out


#: runs this many times the size of the level below's (medians of |U|) say that the iteration diverges
DIVERGENCE_GROWTH = 10.0
#: how the samples were drawn where the driver's z-term went into the drift
TWIN_MEASURE = "the drift its z-term m . z adds (Girsanov), with the driver f(t, x, y, 0)"


def mlp_equation(equation: Equation) -> Equation | None:
    """The equation MLP samples: ``equation`` where its driver has no z, else its Girsanov twin (bsde.girsanov:
    the driver f(t, x, y, 0) on the process drifting by sigma m, the same u) where the z-term is m . z with a
    constant m on a Brownian motion or a GBM; None otherwise."""
    if not equation.driver_uses_z:
        return equation
    from bsde.girsanov import linear_twin

    return linear_twin(equation)


def mlp(
    equation: Equation, *, level: int = DEFAULT_LEVEL, samples: int | None = None,
    repeats: int = DEFAULT_REPEATS, seed: int = 0, progress: Progress | None = None,
    shards: int | None = None, group: Group | None = None,
) -> ReferenceResult:
    """Mean and spread of ``repeats`` independent U_{n,M}(0, x0); M defaults to n. The 95% interval is Student's
    t over the repeats plus |U_n - U_{n-1}| + 2 stderr(U_{n-1}) (U_{n-1} the mean of 10x as many repeats one
    level down): a bound on the Picard truncation's bias, which the repeats' spread does not see, where that
    bias at least halves from one level to the next (Allen-Cahn at d = 20, T = 2: -13.5%, -5%, -1.1% at levels
    4, 5, 6).

    With ``shards`` the repeats come in that many shards of their own streams (over the processes of
    ``group``, where given), gathered in shard order. A driver f(t, x, y, 0) + m . z (constant m) on a Brownian
    motion or a GBM is sampled as its Girsanov twin (:func:`mlp_equation`): the same u, a driver without z.
    """
    sampled = mlp_equation(equation)
    if sampled is None:
        raise ProblemError(f"mlp needs a driver without z, or f(t, x, y, 0) + m . z with a constant m on a Brownian "
                           f"motion or a GBM (its Girsanov twin); '{equation.kind}' has neither")
    twin, equation = sampled is not equation, sampled
    if not equation.process.exact:
        raise ProblemError(f"mlp needs a process with an exact transition; '{equation.kind}' has none")
    if level < 1 or repeats < 2:
        raise ProblemError(f"mlp needs level >= 1 and at least 2 independent repeats (paths=, --paths on the command "
                           f"line), got level={level}, repeats={repeats}")
    start = time.perf_counter()
    runs = _repeats(equation, level, level if samples is None else samples, repeats, seed, progress, shards, group)
    # the Picard truncation: U_{n-1} beside U_n (about 1/(3M) of its cost); its change bounds U_n's bias
    lower = (_repeats(equation, level - 1, level - 1 if samples is None else samples, LOWER_REPEATS * repeats,
                      seed + LOWER_SEED, None, shards, group) if level >= 2 else [])
    if not all(map(math.isfinite, runs + lower)):  # statistics cannot spread an infinity: the engine reports it
        return ReferenceResult(math.nan, None, None, "mlp", None, time.perf_counter() - start, {})
    if (why := divergence(runs, lower)) is not None:
        raise ProblemError(f"the multilevel Picard iteration diverges at level {level} ({why}): it converges where "
                           "the driver's Lipschitz constant in y, times T, is small; no reference from it")
    value = statistics.fmean(runs)
    stderr = statistics.stdev(runs) / math.sqrt(repeats)
    truncation = abs(value) if level == 1 else None  # U_0 = 0
    if lower:  # the change, plus two standard errors of the lower mean (finite: checked above)
        truncation = abs(value - statistics.fmean(lower)) + 2 * statistics.stdev(lower) / math.sqrt(len(lower))
    half_width = student_t975(repeats - 1) * stderr + (truncation or 0.0)
    details = {"level": level, "samples": level if samples is None else samples, "repeats": repeats, "runs": runs,
               **({"measure": TWIN_MEASURE} if twin else {}),
               "truncation_allowance": truncation, "lower_level_runs": lower,
               "ci95": "value +- (t_{0.975, repeats - 1} stderr + |U_n - U_{n-1}| + 2 stderr(U_{n-1}))",
               **({"shards": shards} if shards else {})}
    return ReferenceResult(value, stderr, (value - half_width, value + half_width), "mlp", None,
                           time.perf_counter() - start, details)


def divergence(runs: list[float], lower: list[float]) -> str | None:
    """Why the iteration diverges, or None: finite runs DIVERGENCE_GROWTH times the size of the level below's
    (medians of |U|). A converging iteration changes from one level to the next by a fraction (-13.5%, -5%,
    -1.1% for Allen-Cahn above), one that diverges by factors (a cubic -y^3 with f_y near -3.6 at T = 1, QA:
    medians about 19 and 4e4 against u0 = 1.09, and a mean of 1e13)."""
    size, below = statistics.median(map(abs, runs)), statistics.median(map(abs, lower)) if lower else math.inf
    if size > DIVERGENCE_GROWTH * below:
        return f"its runs are {size:.3g} in size (medians of |U|) against {below:.3g} one level down"
    return None


def _repeats(equation: Equation, level: int, samples: int, repeats: int, seed: int, progress: Progress | None,
             shards: int | None, group: Group | None) -> list[float]:
    """``repeats`` independent U_{level, samples}(0, x0), in shard order where sharded."""
    t0 = torch.zeros(1, dtype=torch.float64, device=DEVICE)
    x0 = torch.tensor([equation.x_start], dtype=torch.float64, device=DEVICE)
    runs: list[float] = []

    def repeat(count: int, generator: torch.Generator, total: int) -> list[float]:
        picard, done = _Picard(equation, samples, generator), []
        for _ in range(count):
            done.append(float(picard(level, t0, x0)[0]))
            runs.append(done[-1])
            if progress is not None:
                progress(len(runs), total)
        return done

    if shards is None:
        return repeat(repeats, torch.Generator(device=DEVICE).manual_seed(seed), repeats)
    sizes = shard_sizes(repeats, shards)
    mine = sum(sizes[s] for s in (group.shards(shards) if group is not None else range(shards)))
    blocks = each_shard(lambda shard, count, generator: repeat(count, generator, mine), sizes, seed, group)
    return [run for block in blocks for run in block]


def student_t975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom (1.96 in the limit)."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))

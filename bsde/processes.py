"""Forward processes X: how they move, simulated from Brownian increments; one class per law.

- :class:`BrownianMotion`  X_t = x0 + drift t + sigma W_t                               (exact)
- :class:`GBM`             dX_i = (drift - q_i) X_i dt + vol_i X_i dB_i, corr(dB) = C        (exact, log-normal)
- :class:`Diffusion`       dX_i = drift_i(t, X) dt + sigma_i(t, X) dW_i                  (Euler-Maruyama)

Each process is a frozen dataclass whose methods act on torch tensors (torch is imported inside them,
so reading a problem never loads it): ``states`` (a whole path from its increments), ``step`` (one step,
optionally steered by a control b), ``transition`` (the exact law of X_{s+dt} given X_s, where ``exact``),
``diffusion_transpose`` (sigma^T v, how Z = sigma^T grad u follows from a gradient). The solver, the
control bound and the reference engine ask the process; nothing dispatches on its type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from bsde.errors import ProblemError

if TYPE_CHECKING:
    import torch

#: a correlation matrix's smallest eigenvalue (or Cholesky pivot) must exceed this: below, a singular one's rounding
MIN_EIGENVALUE = 1e-10
#: up to this dimension a correlation matrix is checked in pure Python (above, by numpy)
PURE_PYTHON_DIM = 48


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ProblemError(f"{name}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ProblemError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ProblemError(f"{name}: must be a finite number, got {value!r}")
    return number


def _listed(value: Any) -> Any:
    """numpy arrays and tensors as (nested) lists, their scalars as numbers; anything else as it is."""
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, (bool, int, float)) else value


def _numbers(value: Any, name: str) -> tuple[float, ...]:
    """A number or a sequence of numbers (a list, tuple or array) as a tuple (a number: a tuple of one, broadcast
    over the assets)."""
    value = _listed(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ProblemError(f"{name}: expected a number or a non-empty list of numbers")
        return tuple(_finite(v, f"{name}[{i}]") for i, v in enumerate(value))
    return (_finite(value, name),)


def check_positive_definite(matrix: tuple[tuple[float, ...], ...]) -> None:
    """A one-line ProblemError unless the symmetric ``matrix`` is positive definite, with margin: its smallest
    eigenvalue (numpy, above PURE_PYTHON_DIM) or its Cholesky pivots (pure Python: no import) above
    MIN_EIGENVALUE; a singular matrix passes a bare Cholesky by rounding, and has no inverse root."""
    n = len(matrix)
    if n > PURE_PYTHON_DIM:
        import numpy as np

        smallest = float(np.linalg.eigvalsh(np.array(matrix, dtype=float))[0])
        if not smallest > MIN_EIGENVALUE:
            raise ProblemError(f"correlation: the matrix is not positive definite (its smallest eigenvalue is "
                               f"{smallest:.3g})")
        return
    rows: list[list[float]] = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            partial = matrix[i][j] - sum(rows[i][k] * rows[j][k] for k in range(j))
            if i == j:
                if not partial > MIN_EIGENVALUE:
                    raise ProblemError(f"correlation: the matrix is not positive definite (Cholesky fails at "
                                       f"row {i}: pivot {partial:.3g})")
                rows[i][i] = math.sqrt(partial)
            else:
                rows[i][j] = partial / rows[j][j]


def uniform_correlation_root(dw: torch.Tensor, rho: float) -> torch.Tensor:
    """C^{1/2} dw along the last axis, C = (1 - rho) I + rho 11^T, in O(dim).

    The symmetric root is a I + c 11^T with a = sqrt(1 - rho), (a + c d)^2 = 1 - rho + rho d.
    """
    if rho == 0.0:
        return dw
    d = dw.shape[-1]
    a = math.sqrt(1.0 - rho)
    c = (math.sqrt(1.0 - rho + rho * d) - a) / d
    return a * dw + c * dw.sum(-1, keepdim=True)


#: from this many numbers per step (batch x dim) a path is summed step by step: one pass over the increments,
#: where one cumsum into the path's strided rows costs three (a temporary, its copy, the start added)
STEP_BY_STEP_FROM = 1 << 14


def running_sum(start: torch.Tensor, increments: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """S (batch, steps+1, dim) with S_0 = start ((dim,) or (batch, dim)) and S_{n+1} = S_n + scale increments_n."""
    import torch

    batch, steps, dim = increments.shape
    out = torch.empty(batch, steps + 1, dim, device=increments.device, dtype=increments.dtype)
    out[:, 0] = start
    if batch * dim >= STEP_BY_STEP_FROM:
        for n in range(steps):
            torch.add(out[:, n], increments[:, n], alpha=scale, out=out[:, n + 1])
    else:
        torch.cumsum(increments, dim=1, out=out[:, 1:])
        torch.add(out[:, :1], out[:, 1:], alpha=scale, out=out[:, 1:])
    return out


def _times(dt: Any, x: torch.Tensor) -> tuple[Any, Any]:
    """(dt, sqrt dt) as tensors that broadcast against x (..., dim): a float, or a tensor shaped like x[..., 0]."""
    import torch

    dt = torch.as_tensor(dt, dtype=x.dtype, device=x.device)
    if dt.ndim:
        dt = dt.unsqueeze(-1)
    return dt, dt.sqrt()


class Process:
    """What every forward process offers (see the module docstring)."""

    #: whether ``transition`` samples the law exactly (otherwise: Euler-Maruyama)
    exact: ClassVar[bool] = False
    #: whether ``step`` with a control b is exact over a step (the controlled measure and the control bound need it)
    steerable: ClassVar[bool] = False
    #: whether the states stay positive (log-normal): the starting point must be positive
    positive: ClassVar[bool] = False

    @property
    def dim(self) -> int | None:
        """The dimension the process fixes (per-asset lists, a correlation matrix), or None."""
        return None

    def check_dim(self, dim: int) -> None:
        """ValueError naming the field when the process's own lists do not have ``dim`` entries."""

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (what ``bsde show`` prints)."""
        raise NotImplementedError

    def step(self, t: float, x: torch.Tensor, dt: float, dw: torch.Tensor,
             control: torch.Tensor | None = None) -> torch.Tensor:
        """X_{t+dt} from X_t = x and the increment dw ~ N(0, dt I); with a control b the paths move under
        dX = mu dt + sigma (b dt + dW) (Girsanov: the measure under which W - int b dt is Brownian)."""
        raise NotImplementedError

    def states(self, x0: torch.Tensor, dw: torch.Tensor, dt: float, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """The path X (batch, steps+1, dim) that the increments dw (batch, steps, dim) drive from x0 (dim,) or
        from one start per path (batch, dim)."""
        import torch

        x = x0.to(dw).expand(dw.shape[0], -1)
        out = [x]
        for n in range(dw.shape[1]):
            x = self.step(n * dt, x, dt, dw[:, n])
            out.append(x)
        return torch.stack(out, dim=1)

    def transition(self, x: torch.Tensor, dt: Any, normals: torch.Tensor) -> torch.Tensor:
        """X_{s+dt} given X_s = x (..., dim), exactly, from standard normals (..., dim); dt a float or a
        tensor broadcasting against x without its last axis."""
        raise TypeError(f"{type(self).__name__} has no exact transition (simulate it with Euler steps)")

    def diffusion_transpose(self, x: torch.Tensor, v: torch.Tensor, t: Any = None) -> torch.Tensor:
        """sigma(t, x)^T v along the last axis: Z = sigma^T grad u from a gradient v = grad u at x."""
        raise NotImplementedError

    def step_transpose(self, x: torch.Tensor, v: torch.Tensor, t: float, over: float) -> torch.Tensor:
        """The Z of a whole step [t, t + over] (one Z_n . dW_n) from v = grad u at x: sigma(t, x)^T v, where the
        process moves with sigma(t, x) over the step."""
        return self.diffusion_transpose(x, v, t)


@dataclass(frozen=True)
class BrownianMotion(Process):
    """X_t = x0 + drift t + sigma W_t (constant scalar diffusion; ``drift`` a number or one per coordinate)."""

    sigma: float
    drift: Any = 0.0
    _tensors: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    exact: ClassVar[bool] = True
    steerable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _finite(self.sigma, "sigma"))
        drift = _numbers(self.drift, "drift")
        object.__setattr__(self, "drift", drift[0] if len(drift) == 1 else drift)
        if self.sigma <= 0:
            raise ProblemError(f"sigma: must be positive, got {self.sigma!r}")

    @property
    def dim(self) -> int | None:
        return len(self.drift) if isinstance(self.drift, tuple) else None

    def check_dim(self, dim: int) -> None:
        if isinstance(self.drift, tuple) and len(self.drift) != dim:
            raise ProblemError(f"drift: expected a number or a list of dim = {dim} numbers, got a list of "
                               f"{len(self.drift)}")

    def drifts(self, dim: int) -> tuple[float, ...]:
        """b_i for i < dim."""
        return self.drift if isinstance(self.drift, tuple) else (self.drift,) * dim

    def describe(self) -> dict[str, Any]:
        drift = list(self.drift) if isinstance(self.drift, tuple) else self.drift
        return {"kind": "brownian", "sigma": self.sigma, "drift": drift}

    def _drift(self, like: torch.Tensor) -> Any:
        """The drift as a number, or (one per coordinate) a tensor of like's dtype and device (cached)."""
        if not isinstance(self.drift, tuple):
            return self.drift
        import torch

        key = (like.dtype, like.device)
        cached = self._tensors.get(key)
        if cached is None:
            cached = self._tensors[key] = torch.tensor(self.drift, dtype=like.dtype, device=like.device)
        return cached

    def step(self, t, x, dt, dw, control=None):
        import torch

        noise = dw if control is None else torch.add(dw, control, alpha=dt)
        moved = torch.add(x, noise, alpha=self.sigma)
        return moved + self._drift(x) * dt if self.drift else moved

    def states(self, x0, dw, dt, *, generator=None):
        """X_n = x0 + drift t_n + sigma W_{t_n}."""
        if self.drift:
            return running_sum(x0, dw * self.sigma + self._drift(dw) * dt)
        return running_sum(x0, dw, self.sigma)

    def transition(self, x, dt, normals):
        dt, root_dt = _times(dt, x)
        return x + self._drift(x) * dt + self.sigma * root_dt * normals

    def diffusion_transpose(self, x, v, t=None):
        return self.sigma * v


@dataclass(frozen=True)
class GBM(Process):
    """dX_i = (drift - q_i) X_i dt + vol_i X_i dB_i, dB = C^{1/2} dW with C the correlation.

    ``vol`` and ``dividend``: a number (every asset) or one per asset; ``correlation``: a number rho
    (C = (1 - rho) I + rho 11^T, its symmetric root in O(dim)) or a full dim x dim matrix (checked
    symmetric positive definite with unit diagonal). C^{1/2} is the symmetric root in both cases, so a
    matrix and the number it spells give one PDE, whatever the assets' order, also for a driver that is
    not a function of |z| alone: sigma(x) = diag(vol x) C^{1/2}, so Z = sigma^T grad u = C^{1/2} (vol x grad u).
    """

    drift: float
    vol: Any
    correlation: Any = 0.0
    dividend: Any = 0.0
    _tensors: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    exact: ClassVar[bool] = True
    steerable: ClassVar[bool] = True
    positive: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "drift", _finite(self.drift, "drift"))
        vol = _numbers(self.vol, "vol")
        if any(v < 0 for v in vol):
            shown = vol[0] if len(set(vol)) == 1 else list(vol)
            raise ProblemError(f"vol: volatilities must be non-negative, got {shown}")
        object.__setattr__(self, "vol", vol)
        object.__setattr__(self, "dividend", _numbers(self.dividend, "dividend"))
        object.__setattr__(self, "correlation", _listed(self.correlation))
        if isinstance(self.correlation, (list, tuple)):
            matrix = self._matrix(self.correlation)
            check_positive_definite(matrix)
            object.__setattr__(self, "correlation", matrix)
        else:
            rho = _finite(self.correlation, "correlation")
            object.__setattr__(self, "correlation", rho)
        sizes = {len(vol), len(self.dividend), self.dim or 1} - {1}
        if len(sizes) > 1:
            raise ProblemError(f"vol, dividend and correlation disagree on the number of assets: {sorted(sizes)}")
        if isinstance(self.correlation, float):
            self._check_uniform(self.dim)

    @staticmethod
    def _matrix(rows: Any) -> tuple[tuple[float, ...], ...]:
        n = len(rows)
        matrix = []
        for i, row in enumerate(rows):
            if not isinstance(row, (list, tuple)) or len(row) != n:
                raise ProblemError(f"correlation: expected a number or a {n}x{n} matrix (a list of {n} lists of "
                                   f"{n} numbers); row {i} is {row!r}")
            matrix.append(tuple(_finite(v, f"correlation[{i}][{j}]") for j, v in enumerate(row)))
        for i in range(n):
            if abs(matrix[i][i] - 1.0) > 1e-12:
                raise ProblemError(f"correlation: a correlation matrix has ones on its diagonal; "
                                   f"correlation[{i}][{i}] is {matrix[i][i]}")
            for j in range(i):
                if abs(matrix[i][j] - matrix[j][i]) > 1e-12:
                    raise ProblemError(f"correlation: the matrix is not symmetric: correlation[{i}][{j}] = "
                                       f"{matrix[i][j]} but correlation[{j}][{i}] = {matrix[j][i]}")
                if abs(matrix[i][j]) > 1.0:
                    raise ProblemError(f"correlation: correlation[{i}][{j}] = {matrix[i][j]} is outside [-1, 1]")
        return tuple(matrix)

    def _check_uniform(self, dim: int | None) -> None:
        rho = self.correlation
        if not -1.0 <= rho <= 1.0:  # whatever the dimension (at dim 1 the root would take sqrt(1 - rho))
            raise ProblemError(f"correlation: {rho} is outside [-1, 1]")
        if dim is not None and dim > 1 and not (-1.0 / (dim - 1) < rho < 1.0):
            raise ProblemError(f"correlation: {rho} makes the {dim}x{dim} correlation matrix not positive definite "
                               f"(need -1/(dim-1) < correlation < 1)")

    # ------------------------------------------------------------------ what the process fixes
    @property
    def dim(self) -> int | None:
        if self.full_correlation:
            return len(self.correlation)
        size = max(len(self.vol), len(self.dividend))
        return size if size > 1 else None

    def check_dim(self, dim: int) -> None:
        for name, values in (("vol", self.vol), ("dividend", self.dividend)):
            if len(values) not in (1, dim):
                raise ProblemError(f"{name}: expected a number or a list of dim = {dim} numbers, got a list of "
                                   f"{len(values)}")
        if self.full_correlation and len(self.correlation) != dim:
            raise ProblemError(f"correlation: expected a {dim}x{dim} matrix, got {len(self.correlation)}x"
                               f"{len(self.correlation)}")
        if not self.full_correlation:
            self._check_uniform(dim)

    @property
    def full_correlation(self) -> bool:
        """Whether the correlation is a full matrix rather than one uniform number."""
        return not isinstance(self.correlation, float)

    @property
    def independent(self) -> bool:
        """Whether the Brownian drivers are independent (correlation 0 or the identity matrix)."""
        if not self.full_correlation:
            return self.correlation == 0.0
        return all(v == (1.0 if i == j else 0.0) for i, row in enumerate(self.correlation) for j, v in enumerate(row))

    def correlation_entry(self, i: int, j: int) -> float:
        """C_ij."""
        if self.full_correlation:
            return self.correlation[i][j]
        return 1.0 if i == j else self.correlation

    def vols(self, dim: int) -> tuple[float, ...]:
        """vol_i for i < dim."""
        return self.vol if len(self.vol) == dim else self.vol * dim

    def dividends(self, dim: int) -> tuple[float, ...]:
        """q_i for i < dim."""
        return self.dividend if len(self.dividend) == dim else self.dividend * dim

    def describe(self) -> dict[str, Any]:
        def short(values: tuple[float, ...]) -> Any:
            return values[0] if len(values) == 1 else list(values)

        correlation = [list(row) for row in self.correlation] if self.full_correlation else self.correlation
        return {"kind": "gbm", "drift": self.drift, "vol": short(self.vol), "correlation": correlation,
                "dividend": short(self.dividend)}

    # ------------------------------------------------------------------ tensors
    def _tensor(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """vol, the log drift (drift - q - vol^2/2), a correlation matrix's symmetric root C^{1/2} ("root") or
        its inverse ("inverse root") as tensors of like's dtype and device (cached)."""
        import torch

        key = (name, like.dtype, like.device)
        cached = self._tensors.get(key)
        if cached is None:
            if name in ("root", "inverse root"):  # C = V diag(l) V^T, C^{+-1/2} = V diag(l^{+-1/2}) V^T
                values, vectors = self._eigen()
                power = values ** (-0.5 if name == "inverse root" else 0.5)
                cached = ((vectors * power) @ vectors.T).to(dtype=like.dtype, device=like.device)
            else:
                vol = torch.tensor(self.vol, dtype=like.dtype, device=like.device)
                dividend = torch.tensor(self.dividend, dtype=like.dtype, device=like.device)
                cached = vol if name == "vol" else self.drift - dividend - 0.5 * vol * vol
            self._tensors[key] = cached
        return cached

    def _eigen(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The correlation matrix's eigenvalues and eigenvectors, in float64 on the CPU, once (cached)."""
        import torch

        cached = self._tensors.get("eigen")
        if cached is None:
            values, vectors = torch.linalg.eigh(torch.tensor(self.correlation, dtype=torch.float64, device="cpu"))
            cached = self._tensors["eigen"] = (values.clamp(min=MIN_EIGENVALUE), vectors)  # checked above it
        return cached

    def correlated(self, dw: torch.Tensor) -> torch.Tensor:
        """dB = C^{1/2} dW along the last axis (O(dim) for a uniform correlation)."""
        if self.full_correlation:
            return dw @ self._tensor("root", dw)  # symmetric: C^{1/2} dW for each row dW
        return uniform_correlation_root(dw, self.correlation)

    # ------------------------------------------------------------------ the law
    def step(self, t, x, dt, dw, control=None):
        """Exact: log X_{t+dt} = log X_t + (drift - q - vol^2/2) dt + vol C^{1/2} (dW + b dt), b held over the step."""
        noise = dw if control is None else dw + control * dt
        return x * (self._tensor("log_drift", x) * dt + self._tensor("vol", x) * self.correlated(noise)).exp()

    def states(self, x0, dw, dt, *, generator=None):
        """Exact log-normal steps: log X_{n+1} = log X_n + (drift - q - vol^2/2) dt + vol (C^{1/2} dW_n)."""
        import torch

        increments = torch.addcmul(self._tensor("log_drift", dw) * dt, self.correlated(dw), self._tensor("vol", dw))
        return running_sum(torch.log(x0), increments).exp_()

    def transition(self, x, dt, normals):
        dt, root_dt = _times(dt, x)
        noise = self.correlated(normals) * self._tensor("vol", x)
        return x * (self._tensor("log_drift", x) * dt + root_dt * noise).exp()

    def diffusion_transpose(self, x, v, t=None):
        """C^{1/2} (vol x v): sigma(x) = diag(vol x) C^{1/2}."""
        w = self._tensor("vol", x) * x * v
        if self.full_correlation:
            return w @ self._tensor("root", w)
        return uniform_correlation_root(w, self.correlation)


@dataclass(frozen=True)
class Diffusion(Process):
    """dX_i = drift_i(t, X) dt + sigma_i(t, X) dW_i (diagonal), by Euler-Maruyama with ``substeps`` per step.

    ``drift(t, x)`` and ``sigma(t, x)`` take t (a float, or a tensor shaped like x[..., 0]) and x (..., dim)
    and return (..., dim) or something that broadcasts to it (a number). Within a step of the solver's grid
    the ``substeps`` sub-increments are drawn from the Brownian bridge that sums to the step's dW.
    """

    drift: Callable[[Any, Any], Any]
    sigma: Callable[[Any, Any], Any]
    substeps: int = 1

    def __post_init__(self) -> None:
        if not callable(self.drift) or not callable(self.sigma):
            raise ProblemError("drift and sigma must be callables f(t, x)")
        if isinstance(self.substeps, bool) or not isinstance(self.substeps, int) or self.substeps < 1:
            raise ProblemError(f"substeps: expected a whole number >= 1, got {self.substeps!r}")

    def describe(self) -> dict[str, Any]:
        return {"kind": "diffusion", "drift": _name(self.drift), "sigma": _name(self.sigma),
                "substeps": self.substeps}

    def check(self, x) -> None:
        """Call drift and sigma on a small batch x (n, dim), with t a number and a tensor (n,): a one-line
        ProblemError where one fails, or returns something that is not a tensor or number shaped like x."""
        import torch

        for name, function in (("drift", self.drift), ("sigma", self.sigma)):
            for t, what in probe_times(x.shape[0], x.dtype):
                value = call_checked(f"process.{name}", function, (t, x), f"{name}(t, x) with {what}, x {tuple(x.shape)}")
                shape = tuple(getattr(value, "shape", ()))
                try:
                    fits = torch.broadcast_shapes(shape, x.shape) == x.shape
                except RuntimeError:
                    fits = False
                if not fits:
                    raise ProblemError(f"process.{name}: must return the shape of x, {tuple(x.shape)} (or a number, or "
                                       f"a shape that broadcasts to it); got {shape}")

    def step(self, t, x, dt, dw, control=None):
        """One Euler-Maruyama step: x + drift(t, x) dt + sigma(t, x) (dw + b dt)."""
        noise = dw if control is None else dw + control * dt
        return x + self.drift(t, x) * dt + self.sigma(t, x) * noise

    def states(self, x0, dw, dt, *, generator=None):
        import torch

        from bsde.simulation import standard_normals

        k = self.substeps
        if k > 1 and generator is None:
            raise ProblemError("Diffusion with substeps > 1 needs a generator for the Brownian bridge")
        h = dt / k
        x = x0.to(dw).expand(dw.shape[0], -1)
        out = [x]
        for n in range(dw.shape[1]):
            if k == 1:
                x = self.step(n * dt, x, dt, dw[:, n])
            else:  # the bridge: k normals of variance h, recentred so that they sum to dw
                e = standard_normals((dw.shape[0], k, dw.shape[2]), generator, device=dw.device,
                                     dtype=dw.dtype) * math.sqrt(h)  # one stream, or one per shard of rows
                sub = e - e.mean(1, keepdim=True) + dw[:, n].unsqueeze(1) / k
                for j in range(k):
                    x = self.step(n * dt + j * h, x, h, sub[:, j])
            out.append(x)
        return torch.stack(out, dim=1)

    def diffusion_transpose(self, x, v, t=None):
        if t is None:
            raise ProblemError("Diffusion.diffusion_transpose needs the time t")
        return self.sigma(t, x) * v

    def mean_sigma(self, t: float, x: Any, over: float) -> Any:
        """sigma averaged over the sub-steps' times t + k over / substeps (at x): what one Z_n . dW_n carries over
        a step whose path moved with each sub-step's sigma in turn (sigma(t, x) alone left delta O(dt) off)."""
        h = over / self.substeps
        return sum(self.sigma(t + k * h, x) for k in range(self.substeps)) / self.substeps

    def step_transpose(self, x, v, t, over):
        return self.mean_sigma(t, x, over) * v


def check_returns_torch(what: str, value: Any) -> None:
    """A user's function must give a torch tensor or a plain number (the solver differentiates it and keeps it on
    the run's device): a one-line ProblemError for anything else, a numpy array say."""
    import torch

    if isinstance(value, bool) or not isinstance(value, (torch.Tensor, int, float)):
        raise ProblemError(f"{what}: must return a torch tensor (or a number), got {type(value).__name__}; write it "
                           "with torch operations on the tensors it is given (numpy breaks the gradient)")


def call_checked(what: str, function: Callable[..., Any], arguments: tuple, called: str) -> Any:
    """``function(*arguments)``, a user's function: a one-line ProblemError naming ``what`` and how it was
    ``called`` where it fails, or where it returns something other than a torch tensor or a number."""
    try:
        value = function(*arguments)
    except Exception as exc:  # noqa: BLE001 - the user's function: say where it failed
        raise ProblemError(f"{what}: calling it as {called} failed: {exc}") from None
    check_returns_torch(what, value)
    return value


def probe_times(n: int, dtype: Any) -> tuple[tuple[Any, str], ...]:
    """The two forms of t the solver passes a user's function, with their descriptions: a number (step by
    step) and a tensor of n times (all steps at once)."""
    import torch

    return (0.0, "t = 0.0"), (torch.zeros(n, dtype=dtype), f"t a tensor ({n},)")


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


#: the old names (before issue 10): ScaledBrownian(sigma) and GeometricBrownian(drift, vol, correlation)
ScaledBrownian = BrownianMotion
GeometricBrownian = GBM

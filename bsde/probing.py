"""What a driver f(t, x, y, z) depends on, found by evaluating it: the solver-facing flags, derived or checked.

At points (t, X_t) drawn along the equation's own paths, with y around g(X) and z of unit size:
uses y (or z) where changing y (or z) alone changes f; linear, f = -r y, where f(y = 0) = 0, f does not
use z and f / y is one constant r everywhere; z_hessian c where the second difference
f(z + u) + f(z - u) - 2 f(z) = -c |u|^2 for every point and direction u (f = -(c/2)|z|^2 + linear in z).
Probing proves a dependence it finds; it cannot prove the absence of one outside the points it tries.
The terminal condition is probed once, for jumps that pathwise derivatives would miss (payoff_jumps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from bsde.errors import ProblemError, file_of, in_file

if TYPE_CHECKING:
    import torch

    from bsde.equations.base import Equation

POINTS = 64
#: probing runs on the CPU in float64, whatever device a solve uses (the functions act on any device)
DEVICE = "cpu"
#: relative tolerance of "the same number" between evaluations (rounding of float64 arithmetic)
SAME = 1e-9
#: relative tolerance of the second-difference test for a constant Hessian
HESSIAN_SAME = 1e-6


@dataclass(frozen=True)
class DriverFlags:
    """What the solver needs to know about f: whether it uses y and z, r where f = -r y exactly (0 for f = 0;
    None where f is not of that form), and c where f = -(c/2)|z|^2 + (linear in z) (None otherwise)."""

    uses_y: bool
    uses_z: bool
    discount_rate: float | None = None
    z_hessian: float | None = None

    @property
    def linear(self) -> bool:
        return self.discount_rate is not None


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = SAME) -> bool:
    scale = 1.0 + max(float(a.abs().max()), float(b.abs().max()))
    return bool(((a - b).abs() <= rel * scale).all())


def probe_points(equation: Equation, count: int = POINTS, seed: int = 0, *,
                 grid_times: bool = False) -> tuple[Any, Any, Any, Any]:
    """(t (n,), x (n, dim), y (n,), z (n, dim)) in float64: t uniform in [0, T] (the first at 0, the last at T), x the
    state of a simulated path at the grid time k T / 4 nearest t. Off the grid, so that a driver whose t-dependence
    vanishes at grid times (a source sin(8 pi t)^2, a bump between them) still shows it (QA: such a source was
    dropped). ``grid_times``: t = that grid time (the points of ``signature``, which checkpoints store)."""
    import torch

    from bsde.simulation import check_finite_states, simulate_paths

    generator = torch.Generator().manual_seed(seed)
    steps = 4
    paths = simulate_paths(equation.process, equation.x_start, equation.total_time, steps, count,
                           generator=generator, device=DEVICE, dtype=torch.float64)
    check_finite_states(paths.x, paths.dt)
    # drawn in both cases, so that the draws after it (t off the grid, y, z) are the same stream either way
    index = torch.randint(0, steps + 1, (count,), generator=generator, device=DEVICE)
    t = index.to(torch.float64) * paths.dt
    if not grid_times:
        t = torch.rand(count, generator=generator, dtype=torch.float64, device=DEVICE) * equation.total_time
        t[0], t[-1] = 0.0, equation.total_time
        index = (t / paths.dt).round().long().clamp(0, steps)
    x = paths.x[torch.arange(count, device=DEVICE), index]
    g = equation.terminal(x).to(torch.float64)
    scale = 1.0 + float(g.abs().mean()) if bool(torch.isfinite(g).all()) else 1.0
    y = g.nan_to_num(0.0, 0.0, 0.0) + scale * torch.randn(count, generator=generator, dtype=torch.float64,
                                                           device=DEVICE)
    z = torch.randn(count, equation.dim, generator=generator, dtype=torch.float64, device=DEVICE)
    return t, x, y, z


def signature(equation: Equation, count: int = 16) -> dict[str, list[float]]:
    """Values that identify an equation's functions: per probe point, the mean of X (the process), g(X) and
    f(t, X, y, Z) at y spread over [-2, 2] (not around g: a change of g alone is not one of f). Two equations
    whose dumps agree (two Python functions of the same name) differ here. The first three at grid times
    (probe_points' ``grid_times``), as checkpoints written by earlier versions have them; ``driver_between``
    is f at times off the grid (a change of f between grid times: a source sin(8 pi t)^2, a bump)."""
    import torch

    y = torch.linspace(-2.0, 2.0, count, dtype=torch.float64, device=DEVICE)
    t, x, _, z = probe_points(equation, count, grid_times=True)
    t_off, x_off, _, z_off = probe_points(equation, count)
    with torch.no_grad():
        values = {"process": x.mean(-1), "terminal": equation.terminal(x), "driver": equation.driver(t, x, y, z),
                  "driver_between": equation.driver(t_off, x_off, y, z_off)}
    return {part: value.to(torch.float64).reshape(-1).tolist() for part, value in values.items()}


#: a signature's parts and what a difference in each says (``driver_between``: absent from checkpoints written
#: before it was added, which are compared on the rest)
SIGNATURE_PARTS = {"process": "process", "terminal": "terminal", "driver": "driver",
                   "driver_between": "driver (between the grid times k T / 4)"}


def same_signature(saved: dict[str, list[float]], now: dict[str, list[float]]) -> list[str]:
    """What differs beyond rounding (NaN matches NaN): the parts' names from SIGNATURE_PARTS, the driver once."""
    def same(a: list[float] | None, b: list[float] | None) -> bool:
        return a is not None and b is not None and len(a) == len(b) and all(
            (math.isnan(u) and math.isnan(v)) or math.isclose(u, v, rel_tol=SAME, abs_tol=SAME) for u, v in zip(a, b))

    differing = [part for part in SIGNATURE_PARTS if (part != "driver_between" or part in saved)
                 and not same(saved.get(part), now.get(part))]
    if "driver" in differing and "driver_between" in differing:
        differing.remove("driver_between")
    return [SIGNATURE_PARTS[part] for part in differing]


def _shown(value: Any, i: int) -> str:
    """Row i of a probe argument, short: a number, or a vector's first entries."""
    import torch

    value = torch.as_tensor(value)
    row = value.reshape(-1)[i] if value.ndim <= 1 else value[i]
    if row.ndim == 0:
        return f"{float(row):.4g}"
    entries = [f"{float(v):.4g}" for v in row[:3]]
    return "[" + ", ".join(entries) + (", ...]" if row.numel() > 3 else "]")


def blamed(equation: Equation, source: str | None = None) -> str:
    """Whom an error about the driver names: the problem's file and key (``source``), or the equation's key and name."""
    file = file_of(source)
    name = getattr(equation, "name", None) or equation.kind
    return f"{file}: equation.driver" if file else f"equation.driver of {name!r}"


def _evaluator(equation: Equation, t: Any, x: Any) -> Any:
    """at(y, z) = f(t, x, y, z) at the probe points (t, x), as a float64 vector of one value per point."""
    import torch

    def at(y: Any, z: Any) -> torch.Tensor:
        return torch.as_tensor(equation.driver(t, x, y, z), dtype=torch.float64, device=DEVICE).expand(len(t))

    return at


def probe_driver(equation: Equation, count: int = POINTS, seed: int = 0, *, source: str | None = None) -> DriverFlags:
    """The flags of ``equation.driver`` found by evaluating it (see the module docstring); ``source``: the file
    that errors name."""
    import torch

    try:
        t, x, y, z = probe_points(equation, count, seed)
    except ProblemError as exc:  # the process's states (check_finite_states), before the driver is blamed
        raise in_file(exc, source) from None
    at = _evaluator(equation, t, x)
    base = at(y, z)
    if not bool(torch.isfinite(base).all()):
        i = int((~torch.isfinite(base)).nonzero()[0, 0])
        point = ", ".join(f"{name} = {_shown(value, i)}" for name, value in (("t", t), ("x", x), ("y", y), ("z", z)))
        raise ProblemError(f"{blamed(equation, source)}: not finite at the probe points (t and x along its paths, "
                           f"y drawn around g(x) and z around 0, of either sign): f = {float(base[i])} at {point}; "
                           "guard it where y or z may be any number (sqrt(abs(y)), say)")
    shifted_y = y + 1.0 + y.abs()
    uses_y = not _close(base, at(shifted_y, z)) or not _close(base, at(-y, z))
    other_z = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64,
                          device=DEVICE)
    uses_z = not _close(base, at(y, other_z)) or not _close(base, at(y, 3.0 * z))
    rate = _discount_rate(at, y, z, base, uses_z)
    hessian = _z_hessian(at, y, z, seed) if uses_z else None
    return DriverFlags(uses_y, uses_z, rate, hessian)


def _discount_rate(at: Any, y: Any, z: Any, base: Any, uses_z: bool) -> float | None:
    """r if f = -r y at every point (f(0) = 0, f(2y) = 2 f(y), -f/y one constant), else None."""
    import torch

    if uses_z or not _close(at(torch.zeros_like(y), z), torch.zeros_like(y)):
        return None
    if not _close(at(2.0 * y, z), 2.0 * base):
        return None
    usable = y.abs() > 1e-6
    ratios = -base[usable] / y[usable]
    if not ratios.numel():
        return None
    rate = float(ratios.mean())
    if not _close(ratios, torch.full_like(ratios, rate)):
        return None
    return float(f"{rate:.14g}") + 0.0  # the mean of r_i, without the last digits' rounding


def _z_hessian(at: Any, y: Any, z: Any, seed: int) -> float | None:
    """c if f(z + u) + f(z - u) - 2 f(z) = -c |u|^2 for every point and two random directions u, else None."""
    import torch

    generator = torch.Generator().manual_seed(seed + 2)
    base = at(y, z)
    estimates = []
    for size in (0.5, 2.0):
        u = size * torch.randn(z.shape, generator=generator, dtype=torch.float64, device=DEVICE)
        second = at(y, z + u) + at(y, z - u) - 2.0 * base
        estimates.append(-second / u.square().sum(-1))
    c = torch.cat(estimates)
    value = float(c.mean())
    if not math.isfinite(value) or value == 0.0:
        return None
    if not bool(((c - value).abs() <= HESSIAN_SAME * abs(value)).all()):
        return None
    return float(f"{value:.10g}")  # without the last digits' rounding (the test asks agreement to 1e-6)


def pure_quadratic(equation: Equation, count: int = POINTS, seed: int = 0) -> float | None:
    """c where the driver is f = -(c/2)|z|^2 alone (no y, no term linear in z or free of z): its flags say
    -(c/2)|z|^2 + linear, and at probe points f(z = 0) = 0 and f(-z) = f(z); else None. The case of the
    Cole-Hopf transform (bsde.reference.cole_hopf)."""
    import torch

    c = equation.z_hessian
    if c is None or equation.driver_uses_y:
        return None
    t, x, y, z = probe_points(equation, count, seed)
    at = _evaluator(equation, t, x)
    base = at(y, z)
    if not _close(at(y, torch.zeros_like(z)), torch.zeros_like(base)) or not _close(at(y, -z), base):
        return None
    return c


class LinearInZ(NamedTuple):
    """f = -rate y + m . z + k(t, x): constants ``rate`` and ``m``; ``source``: whether the source k = f(t, x, 0, 0)
    is nonzero at some probe point; ``source_uses_x``: whether it changes with x there (else k = k(t))."""

    rate: float
    m: tuple[float, ...]
    source: bool = False
    source_uses_x: bool = False


def _z_coefficients(at: Any, y: Any, z: Any) -> Any:
    """m (dim,) where at(y, z) - at(y, 0) = m . z with one m at every probe point (m by autograd), else None."""
    import torch

    leaf = z.clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(at(y, leaf).sum(), leaf)
    except RuntimeError:  # not differentiable by torch (or not a function of z there)
        return None
    m = grad[0]
    if not _close(grad, m.expand_as(grad)) or not _close(at(y, z) - at(y, torch.zeros_like(z)), z @ m):
        return None
    return m


def z_drift_coefficients(equation: Equation, count: int = POINTS, seed: int = 0) -> tuple[float, ...] | None:
    """m where f(t, x, y, z) = f(t, x, y, 0) + m . z with a constant vector m and the driver uses z, found at probe
    points (m by autograd: a driver torch cannot differentiate gives None); else None. What the z-term turns into
    under a Girsanov change of drift (bsde.girsanov), whatever f does with t, x and y."""
    if not equation.driver_uses_z:
        return None
    t, x, y, z = probe_points(equation, count, seed)
    m = _z_coefficients(_evaluator(equation, t, x), y, z)
    return None if m is None else tuple(float(v) for v in m)


def linear_driver(equation: Equation, count: int = POINTS, seed: int = 0, *,
                  without_z: bool = False) -> LinearInZ | None:
    """f = -r y + m . z + k(t, x) with constants r and m (a vector, as :func:`z_drift_coefficients` finds it), a
    source k of t and x alone (0 included), where the driver uses z (or, ``without_z``, where it does not, with m = 0
    and k not 0: what f = -r y alone leaves out), found at probe points; else None. The case of a Girsanov change of
    drift with a Feynman-Kac value (bsde.reference.girsanov)."""
    import torch

    if not equation.driver_uses_z and not without_z:
        return None
    t, x, y, z = probe_points(equation, count, seed)
    at = _evaluator(equation, t, x)
    m = _z_coefficients(at, y, z) if equation.driver_uses_z else torch.zeros_like(z[0])
    if m is None:
        return None
    no_y, no_z = torch.zeros_like(y), torch.zeros_like(z)
    source = at(no_y, no_z)

    def unsourced(y_: Any, z_: Any) -> torch.Tensor:
        return at(y_, z_) - source

    rate = _discount_rate(unsourced, y, no_z, unsourced(y, no_z), uses_z=False)  # f(y, 0) - k = -r y
    if rate is None or not _close(at(y, z), source - rate * y + z @ m):
        return None
    sourced = not _close(source, torch.zeros_like(source))
    if not equation.driver_uses_z and not sourced:  # f = -r y: the plain Monte Carlo's case, not this one
        return None
    shuffled = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 3))]
    uses_x = sourced and not _close(source, _evaluator(equation, t, shuffled)(no_y, no_z))
    return LinearInZ(rate, tuple(float(v) for v in m), sourced, uses_x)


def payoff_jumps(equation: Equation, count: int = 4096, seed: int = 0) -> bool:
    """Whether g has a jump where X_T lands: at terminal states x and x + h (h a random step of 5% of |x_i| + 1),
    g(x + h) - g(x) differs from the trapezoid (grad g(x) + grad g(x + h)) . h / 2 by more than a Lipschitz g
    allows, 2 max |grad g| |h| (a kink passes; a digital's step, which autograd sees as gradient 0, does not)."""
    import torch

    from bsde.model import terminal_gradient
    from bsde.simulation import simulate_paths

    generator = torch.Generator().manual_seed(seed)
    paths = simulate_paths(equation.process, equation.x_start, equation.total_time, 1, count, generator=generator,
                           device=DEVICE, dtype=torch.float64)
    x = paths.x[:, -1]
    h = 0.05 * (x.abs() + 1.0) * torch.randn(x.shape, generator=generator, dtype=torch.float64, device=DEVICE)
    with torch.no_grad():
        rise = (equation.terminal(x + h) - equation.terminal(x)).to(torch.float64)
    slopes = terminal_gradient(equation, x), terminal_gradient(equation, x + h)
    trapezoid = 0.5 * ((slopes[0] + slopes[1]) * h).sum(-1)
    bound = 2.0 * torch.maximum(*(s.norm(dim=-1) for s in slopes)) * h.norm(dim=-1)
    gap = (rise - trapezoid).abs()
    finite = torch.isfinite(gap) & torch.isfinite(bound)
    return bool((gap[finite] > bound[finite] + SAME * (1.0 + rise[finite].abs())).any())


def declared_flags(equation: Equation) -> DriverFlags:
    """The flags an equation declares (its properties)."""
    return DriverFlags(equation.driver_uses_y, equation.driver_uses_z,
                       equation.discount_rate if equation.driver_is_linear else None, equation.z_hessian)


def verify_flags(equation: Equation, source: str | None = None) -> None:
    """ProblemError where a declared flag would change the answer: the driver uses y or z while the equation
    says it does not, or is not the declared -r y, or not -(c/2)|z|^2 + linear with the declared c; or where the
    driver is not finite on the paths. ``source``: the problem's file, which the message names.

    A flag that only costs time (says y or z is used where it is not, or no Hessian where there is one) passes.
    """
    declared, probed = declared_flags(equation), probe_driver(equation, source=source)
    wrong = []
    if probed.uses_y and not declared.uses_y:
        wrong.append("driver_uses_y is False but the driver changes with y")
    if probed.uses_z and not declared.uses_z:
        wrong.append("driver_uses_z is False but the driver changes with z")
    if declared.linear and not (probed.linear and math.isclose(probed.discount_rate, declared.discount_rate,
                                                                rel_tol=1e-7, abs_tol=1e-12)):
        found = "not of that form" if not probed.linear else f"-{probed.discount_rate:g} y"
        wrong.append(f"driver_is_linear says f = -{declared.discount_rate:g} y, but the driver is {found}")
    if declared.z_hessian is not None and not (probed.z_hessian is not None and math.isclose(
            probed.z_hessian, declared.z_hessian, rel_tol=1e-5)):
        found = "no such form" if probed.z_hessian is None else f"c = {probed.z_hessian:g}"
        wrong.append(f"z_hessian says f = -(c/2)|z|^2 + linear with c = {declared.z_hessian:g}, but probing finds "
                     f"{found}")
    if wrong:
        raise ProblemError(f"{blamed(equation, source)}: {'; '.join(wrong)} (the flags decide how the solver treats "
                           f"f)")

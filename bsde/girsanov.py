"""The Girsanov shift: a driver f = h(t, x, y) + m . z (constant m) on a Brownian motion or a GBM moves the drift
by sigma m.

u_t + b . grad u + (1/2) tr(sigma sigma^T Hess u) + h(t, x, u) + m . (sigma^T grad u) = 0 is the same PDE with the
driver h = f(t, x, y, 0) and the process drifting at b + sigma m: for a Brownian motion each coordinate gains
sigma m_i, for a GBM (sigma(x) = diag(vol x) C^{1/2}) asset i's rate gains vol_i (C^{1/2} m)_i. The solver trains on
that twin (:func:`linear_twin`): the same u and Z = sigma^T grad u, but the driver has no z, so y0 no longer errs to
first order in Z's error through it. Where h = -r y + k(t, x) (constant r) Feynman-Kac gives the value, which the
reference samples under that drift (:mod:`bsde.reference.girsanov`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bsde.processes import GBM, BrownianMotion

if TYPE_CHECKING:
    from bsde.equations.base import Equation
    from bsde.probing import LinearInZ
    from bsde.processes import Process


def girsanov_drift(equation: Equation) -> LinearInZ | None:
    """(r, m, source, source_uses_x) where f = -r y + m . z + k(t, x) on a Brownian motion or a GBM uses z or has a
    source k (m = 0: Feynman-Kac with no change of drift; QA: -r y + k fell to the slow mlp), found by probing
    (:func:`bsde.probing.linear_driver`); else None."""
    if not isinstance(equation.process, (BrownianMotion, GBM)):
        return None
    from bsde.probing import linear_driver

    return linear_driver(equation, without_z=True)


def drift_shift(equation: Equation, m: tuple[float, ...]) -> tuple[float, ...]:
    """What the z-term adds to each coordinate's drift: sigma m_i (Brownian, additive), vol_i (C^{1/2} m)_i (GBM, a
    rate)."""
    process = equation.process
    if isinstance(process, BrownianMotion):
        return tuple(process.sigma * v for v in m)
    import torch

    rooted = process.correlated(torch.tensor([m], dtype=torch.float64))[0]  # C^{1/2} m (the root is symmetric)
    return tuple(v * float(c) for v, c in zip(process.vols(equation.dim), rooted))


def shifted_process(equation: Equation, m: tuple[float, ...]) -> Process:
    """The process drifting as under the z-term: a GBM with its dividends lowered by the shift, a Brownian motion with
    its drift raised by it (one number where the new drift is the same in every coordinate)."""
    shift, process = drift_shift(equation, m), equation.process
    if isinstance(process, GBM):
        return replace(process, dividend=tuple(q - s for q, s in zip(process.dividends(equation.dim), shift)))
    drift = tuple(b + s for b, s in zip(process.drifts(equation.dim), shift))
    return replace(process, drift=drift[0] if len(set(drift)) == 1 else drift)


def linear_twin(equation: Equation) -> Equation | None:
    """The equation with the driver f(t, x, y, 0) on the shifted process (the same u), where f = f(t, x, y, 0) + m . z
    with a constant m on a Brownian motion or a GBM; else None. For f = -r y + m . z that driver is -r y (linear)."""
    if not isinstance(equation.process, (BrownianMotion, GBM)):
        return None
    from bsde.probing import DriverFlags, linear_driver, z_drift_coefficients

    found = linear_driver(equation)  # -r y + m . z + k(t, x); else any f(t, x, y, 0) + m . z
    m = found.m if found is not None else z_drift_coefficients(equation)
    if m is None:
        return None
    process = shifted_process(equation, m)
    from bsde.equations.functions import custom_equation

    original = equation.driver
    if found is not None and not found.source:  # f = -r y + m . z
        rate = found.rate
        driver = (lambda t, x, y, z: -rate * y) if rate else None
        flags = DriverFlags(uses_y=bool(rate), uses_z=False, discount_rate=rate)
    else:
        def driver(t, x, y, z):  # f(t, x, y, 0): all but the z-term, which went into the drift
            return original(t, x, y, z.new_zeros(z.shape))

        flags = DriverFlags(uses_y=equation.driver_uses_y, uses_z=False)
    return custom_equation(dim=equation.dim, x0=list(equation.x_start), process=process, terminal=equation.terminal,
                           driver=driver, total_time=equation.total_time,
                           name=getattr(equation, "name", equation.kind), flags=flags)  # a shipped kind has no name

"""The closed-form solution u(0, x0) of an equation that has one (``Equation.exact_solution``)."""

from __future__ import annotations

import time

import torch

from bsde.equations.base import Equation
from bsde.errors import ProblemError
from bsde.reference.result import ReferenceResult
from bsde.reference.sampling import DEVICE


def exact(equation: Equation) -> ReferenceResult:
    """u(0, x0) from the formula, in float64; its error is rounding (reported as an error estimate of 0)."""
    if not equation.has_exact_solution:
        raise ProblemError(f"exact applies to equations with a closed-form solution, not '{equation.kind}'")
    start = time.perf_counter()
    x0 = torch.tensor(equation.x_start, dtype=torch.float64, device=DEVICE)
    value = float(equation.exact_solution(0.0, x0))
    return ReferenceResult(value, None, None, "exact", None, time.perf_counter() - start, {"error_estimate": 0.0})

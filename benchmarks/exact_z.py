"""What the time step alone costs: the solver's march with the exact Z* = sigma grad u (HJB, from the radial solve).

    python benchmarks/exact_z.py                       # a few (d, lam) at N = 20, 40, 80, Euler and trapezoid

With Z_n = Z*(t_n, X_n) no network is involved: y0 = mean(g(X_N) - (Y_N - Y_0)) is the value the scheme
would give with perfect networks, so y0 - u0 is the time-discretisation error, and the terminal loss
Var(g - Y_N) is the floor that no network can go below at that N. Z* = sigma 2 x v_s(t, |x|^2) where
v(t, s) is the radial solution in s = |x|^2 (cubic splines on its grid).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

import bsde
from bsde.model import DeepBSDE
from bsde.reference.radial import radial, radial_profiles
from bsde.simulation import simulate_paths


def exact_z_run(dim: int, lam: float, steps: int, scheme: str, paths: int, seed: int = 0) -> tuple[float, float, float]:
    """(y0, its standard error, terminal loss) of the scheme with the exact Z."""
    equation = bsde.load_problem("hjb", {"equation.dim": dim, "equation.lam": lam}).equation
    form = equation.radial_form()
    profiles = radial_profiles(form, steps, points=2000, steps=steps * max(1, 400 // steps))
    sim = simulate_paths(equation.process, equation.x_start, equation.total_time, steps, paths,
                         generator=torch.Generator().manual_seed(seed))
    z = torch.empty_like(sim.dw)
    for n in range(steps):
        x = sim.x[:, n]
        slope = profiles[n](x.square().sum(-1).numpy(), 1)  # v_s
        z[:, n] = form.sigma * 2 * x * torch.as_tensor(slope).unsqueeze(-1)
    model = DeepBSDE(equation, steps, [1], dtype=torch.float64, scheme=scheme)
    with torch.no_grad():
        residual = equation.terminal(sim.x[:, -1]) - model.march(sim.x, sim.dw, sim.dt, z, y_start=torch.tensor(0.0))
    return float(residual.mean()), float(residual.std()) / math.sqrt(paths), float(residual.var())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="2:1,5:2,20:5,100:1", help="dim:lam pairs")
    parser.add_argument("--steps", default="20,40,80")
    parser.add_argument("--paths", type=int, default=1 << 14)
    args = parser.parse_args()
    print("| d | lam | N | scheme | y0 (exact Z) | reference | error | terminal loss |")
    print("|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        dim, lam = int(case.split(":")[0]), float(case.split(":")[1])
        ref = radial(bsde.load_problem("hjb", {"equation.dim": dim, "equation.lam": lam}).equation).value
        for steps in map(int, args.steps.split(",")):
            for scheme in ("euler", "trapezoid"):
                y0, stderr, loss = exact_z_run(dim, lam, steps, scheme, args.paths)
                print(f"| {dim} | {lam:g} | {steps} | {scheme} | {y0:.5f} +- {stderr:.1g} | {ref:.5f} | "
                      f"{100 * (y0 - ref) / ref:+.2f} % | {loss:.2e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

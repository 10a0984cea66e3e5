"""Which value to read off the learned control (HJB): J, J - (c/2) Var S, or -(1/c) ln E exp(-c S), on the same paths.

    python benchmarks/value_estimators.py --cases 5:10,10:5,10:10,20:10          # default solves, seed 0
    python benchmarks/value_estimators.py --cases 20:10 --steps                  # where the learned Z is wrong

Trains each case with the default settings (as `bsde solve`), then draws one batch of paths under the
learned control (`bsde.control_bound.controlled_samples`, no refinement) and under the exact control
Z* = sigma grad u of the radial solve, scaled by 1, 0.9 and 0.8, and prints, relative to the radial value:
the bound J = mean S, the second-order value J - (c/2) Var S (what the solver reported before), the
importance-sampled value V = -(1/c) ln mean exp(-c S) (what it reports now) with its standard error, and the
effective sample size of the weights. ``--steps`` adds, per step n, the relative L2 error of the trained Z_n
against Z*(t_n) along the controlled paths and its projection on Z* (the share by which Z_n is too small).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

import bsde
from bsde.control_bound import BOUND_SUBSTEPS, bound_paths, controlled_samples, exponential_mean, step_controls
from bsde.model import terminal_z
from bsde.reference.radial import radial, radial_profiles
from bsde.trainer import train


def exact_controls(equation, steps: int, scale: float, dtype: torch.dtype):
    """Z*(t_n, x) = scale * sigma 2 x v_s(t_n, |x|^2) for n = 0..N from the radial solve."""
    form = equation.radial_form()
    profiles = radial_profiles(form, steps, points=2000, steps=steps * 40)

    def control(n):
        def z(x):
            slope = profiles[n](x.square().sum(-1).double().cpu().numpy(), 1)
            return (scale * form.sigma * 2 * x * torch.as_tensor(slope, dtype=x.dtype).unsqueeze(-1))
        return z

    return [control(n) for n in range(steps + 1)]


def row(label: str, samples: torch.Tensor, c: float, ref: float) -> str:
    value, stderr, effective = exponential_mean(samples, c)
    mean, var = float(samples.mean()), float(samples.var())
    pct = lambda v: 100 * (v - ref) / abs(ref)  # noqa: E731
    return (f"| {label} | {pct(mean):+.3f} % | {pct(mean - 0.5 * c * var):+.3f} % | {pct(value):+.3f} % "
            f"+- {100 * stderr / abs(ref):.3f} % | {c * c * var:.3g} | {effective / samples.numel():.2f} |")


def per_step(model, equation, paths: int, generator: torch.Generator) -> None:
    """Relative error and shrinkage of the trained Z_n against Z*(t_n) along the learned control's paths."""
    steps = model.time_steps
    exact = exact_controls(equation, steps, 1.0, torch.float64)
    controls = step_controls(model, torch.float64)
    h = equation.total_time / (steps * BOUND_SUBSTEPS)
    x = torch.as_tensor(equation.x_start, dtype=torch.float64).expand(paths, -1).clone()
    print("| n | E|Z* - Z_n|^2 / E|Z*|^2 | E[(Z* - Z_n) . Z*] / E|Z*|^2 |\n|---|---|---|")
    with torch.no_grad():
        for n in range(steps):
            if n:
                star, learned = exact[n](x), controls[n](x)
                norm = float(star.square().sum(-1).mean())
                print(f"| {n} | {float((star - learned).square().sum(-1).mean()) / norm:.3f} | "
                      f"{float(((star - learned) * star).sum(-1).mean()) / norm:+.3f} |")
            for k in range(BOUND_SUBSTEPS):
                z = torch.lerp(controls[n](x), controls[n + 1](x) if n + 1 < steps else terminal_z(equation, x),
                               k / BOUND_SUBSTEPS)
                dw = math.sqrt(h) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
                x = equation.process.step(0.0, x, h, dw, control=equation.driver_z_gradient(0.0, x, z))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="5:10,10:5,10:10,20:10", help="dim:lam pairs (x0 = 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", action="store_true", help="the per-step error of the trained Z")
    args = parser.parse_args()
    for case in args.cases.split(","):
        dim, lam = int(case.split(":")[0]), float(case.split(":")[1])
        problem = bsde.load_problem("hjb", {"equation.dim": dim, "equation.lam": lam})
        equation, c = problem.equation, problem.equation.z_hessian
        ref = radial(equation).value
        trained = train(equation, problem.solver.for_device("cpu"), generator=torch.Generator().manual_seed(args.seed),
                        device=torch.device("cpu"))
        model = trained.model.eval()
        paths = bound_paths(dim)
        print(f"\nhjb d = {dim}, lam = {lam:g}, x0 = 0, seed {args.seed}: radial value {ref:.6g}, deep BSDE y0 "
              f"{100 * (model.y_start.item() - ref) / abs(ref):+.2f} %, {paths} paths, {BOUND_SUBSTEPS} sub-steps\n")
        print("| control | J | J - (c/2) Var S | V = -(1/c) ln mean exp(-c S) | c^2 Var S | ESS / paths |")
        print("|---|---|---|---|---|---|")
        draw = lambda controls: controlled_samples(  # noqa: E731
            model, controls, paths, BOUND_SUBSTEPS, True, torch.Generator().manual_seed(args.seed + 7), torch.float32)[0]
        print(row("learned", draw(step_controls(model, torch.float32)), c, ref), flush=True)
        for scale in (1.0, 0.9, 0.8):
            print(row(f"exact x {scale:g}", draw(exact_controls(equation, model.time_steps, scale, torch.float32)), c,
                      ref), flush=True)
        if args.steps:
            print()
            per_step(model, equation, 4096, torch.Generator().manual_seed(3))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A put on a basket of five correlated assets, written in Python, against its Monte Carlo reference.

u(0, x0) = e^{-rT} E[(K - mean(X_T))^+] with X a geometric Brownian motion whose Brownian drivers are
correlated by a full matrix (validated by Cholesky). The driver -r y is linear, so the Monte Carlo
price is the reference; the deep BSDE solver also returns Z_0 = sigma^T grad u, the hedge.

    python examples/basket_put.py             # the default solver settings (about a minute on 2 cores)
    python examples/basket_put.py --small     # a quick run (what the tests do, with --threads 1)

The same problem as a file: problems/basket_put.yaml (`bsde solve basket_put`).
"""

from __future__ import annotations

import argparse

import bsde

RATE, STRIKE = 0.05, 100.0
VOLS = [0.1, 0.2, 0.3, 0.25, 0.15]
CORRELATION = [[1.0, 0.3, 0.2, 0.1, 0.0], [0.3, 1.0, 0.4, 0.2, 0.1], [0.2, 0.4, 1.0, 0.3, 0.2],
               [0.1, 0.2, 0.3, 1.0, 0.4], [0.0, 0.1, 0.2, 0.4, 1.0]]


def basket_put(x):
    """g(x) = (K - mean(x))^+ (x: (..., 5) torch tensor -> (...))."""
    return (STRIKE - x.mean(-1)).clamp(min=0.0)


def discounting(t, x, y, z):
    """f = -r y: the price of a payoff paid at T."""
    return -RATE * y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer iterations and paths (a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    args = parser.parse_args()

    market = bsde.GBM(drift=RATE, vol=VOLS, correlation=CORRELATION)
    equation = bsde.custom_equation(dim=5, x0=100.0, process=market, terminal=basket_put, driver=discounting,
                                    name="basket_put")
    reference = bsde.reference(equation, "mc", paths=1 << (18 if args.small else 21), seed=args.seed)
    solver = {"iterations": 600, "time_steps": 10, "batch_size": 256} if args.small else {
        "iterations": 1000, "batch_size": 256,
        "learning_rate": {"boundaries": [500, 800], "values": [0.02, 0.002, 0.0002]}}
    result = bsde.solve(equation, solver=solver, seed=args.seed, threads=args.threads, reference=reference)

    print(f"deep BSDE   y0 = {result.y0:.4f}")
    print(f"reference   u0 = {reference.value:.4f} +- {reference.error_bar:.2g} (95% CI, Monte Carlo)")
    print(f"difference  {result.y0 - reference.value:+.4f} ({100 * (result.y0 / reference.value - 1):+.2f}%)")
    print("hedge Z_0 = sigma^T grad u:", " ".join(f"{z:+.3f}" for z in result.z0))


if __name__ == "__main__":
    main()

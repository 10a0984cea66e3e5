"""examples/basket_put.py and examples/regression_check.sh run at small settings and agree with Monte Carlo; the
example problem files pose the values their comments state."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_basket_put_example_agrees_with_its_monte_carlo_reference():
    done = subprocess.run([sys.executable, str(EXAMPLES / "basket_put.py"), "--small", "--threads", "1"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    y0 = float(re.search(r"y0 = (\S+)", done.stdout).group(1))
    ref, half_width = (float(v) for v in re.search(r"u0 = (\S+) \+- (\S+)", done.stdout).groups())
    assert abs(y0 - ref) <= half_width + 0.01 * ref, done.stdout  # CI plus 1% at 600 iterations
    assert len(re.search(r"Z_0 = sigma\^T grad u: (.*)", done.stdout).group(1).split()) == 5


@pytest.mark.slow
def test_regression_check_fails_above_its_tolerance_and_writes_the_reports(tmp_path):
    env = {**os.environ, "SMALL": "1", "TOL": "0", "OUT": str(tmp_path),  # the script runs this Python's bsde
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    done = subprocess.run(["bash", str(EXAMPLES / "regression_check.sh"), "basket_put"], capture_output=True,
                          text=True, timeout=900, env=env)
    assert done.returncode == 1, done.stderr  # no solve is exact: a zero tolerance fails, after the reports
    report = json.loads((tmp_path / "basket_put.json").read_text())
    text = json.dumps(report)
    errors = [float(v) for v in re.findall(r'"rel_error": ([0-9.eE+-]+)', text)]
    assert errors and max(errors) < 0.02, text[:2000]  # the fast preset at 10 steps: within 2% of Monte Carlo


def test_the_example_problem_files_pose_the_values_they_state():
    """girsanov_brownian.yaml: 16 exactly; girsanov_source.yaml: 3.373629 (its comment's formula);
    basket_call_real_drift.yaml: the risk-neutral basket price (its theta
    moves every rate to r, so no pricing-measure note), by its Girsanov reference against plain Monte Carlo of the
    risk-neutral problem on other paths."""
    import bsde
    from bsde.equations.base import pricing_measure_note
    from bsde.girsanov import girsanov_drift

    brownian = bsde.reference(bsde.load_problem(str(EXAMPLES / "girsanov_brownian.yaml")), paths=1 << 16)
    assert abs(brownian.value - 16.0) < 4 * brownian.stderr
    source = bsde.reference(bsde.load_problem(str(EXAMPLES / "girsanov_source.yaml")), paths=1 << 16)
    assert source.method == "girsanov" and abs(source.value - 3.373629) < 4 * source.stderr
    basket = bsde.load_problem(str(EXAMPLES / "basket_call_real_drift.yaml"))
    assert pricing_measure_note(basket.equation, girsanov_drift(basket.equation)) is None
    for dividend, says in ((0.0, "the assets drift at 0.12 "), (0.02, "the assets return (drift plus dividend yield) "
                                                                      "0.12 ")):  # theta 0: the real measure (QA)
        real_measure = bsde.load_problem(str(EXAMPLES / "basket_call_real_drift.yaml"),
                                         {"equation.params.theta": 0.0, "equation.process.dividend": dividend})
        assert says in pricing_measure_note(real_measure.equation, girsanov_drift(real_measure.equation))
    neutral = bsde.load_problem(str(EXAMPLES / "basket_call_real_drift.yaml"),
                                {"equation.driver": "-r * y", "equation.process.drift": 0.03})
    real, plain = bsde.reference(basket, paths=1 << 16), bsde.reference(neutral, "mc", paths=1 << 16, seed=1)
    assert real.method == "girsanov" and abs(real.value - plain.value) < 4 * (real.stderr ** 2 + plain.stderr ** 2) ** 0.5


def test_time_dependent_z_example_poses_the_solution_its_comment_states():
    """time_dependent_z.yaml: u = (1 + t) e^{-mean(x)} makes u_t + (sigma^2 / 2) Laplace u + f(t, x, u, sigma grad u)
    vanish (by autograd, at random points), and its reference value is u(0, x0)."""
    import torch

    import bsde

    problem = bsde.load_problem(str(EXAMPLES / "time_dependent_z.yaml"))
    equation, sigma = problem.equation, 0.2
    t = torch.rand(64, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).mul(1.5).requires_grad_()
    x = torch.randn(64, equation.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    u = (1 + t[:, 0]) * torch.exp(-x.mean(-1))
    u_t, grad = torch.autograd.grad(u.sum(), (t, x), create_graph=True)
    laplace = sum(torch.autograd.grad(grad[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(equation.dim))
    residual = u_t[:, 0] + 0.5 * sigma**2 * laplace + equation.driver(t[:, 0], x, u, sigma * grad)
    assert residual.abs().max().item() < 1e-12
    x0 = torch.tensor(equation.x_start, dtype=torch.float64)
    assert problem.reference.value == pytest.approx(torch.exp(-x0.mean()).item(), rel=1e-15)

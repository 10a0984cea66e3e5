"""solver.region: the box's checks (one-line errors naming the key), starts drawn from it, its coordinates."""

from __future__ import annotations

import math

import pytest
import torch

import bsde
from bsde.errors import ProblemError
from bsde.region import Region, box_coordinates, draw_starts
from bsde.simulation import simulate_paths


@pytest.mark.parametrize("region,key,text", [
    ({"low": [-1, 0], "high": 1}, "solver.region.low", "list of dim = 3 numbers"),
    ({"low": 1, "high": -1}, "solver.region", "low <= high"),
    ({"low": 0, "high": 0}, "solver.region", "low < high in one"),
    ({"low": -1, "high": 1, "hidden": [0]}, "solver.region.hidden", "positive layer widths"),
    ({"low": 0.5, "high": 1}, "equation.x0", "must lie in solver.region's box"),
    ({"low": -1, "high": 1, "lg": True}, "solver.region.lg", "unknown key"),
])
def test_bad_regions_are_one_line_errors_naming_the_key(region, key, text):
    with pytest.raises(ProblemError) as caught:
        bsde.load_problem("hjb", {"equation.dim": 3, "solver.region": region})
    message = str(caught.value)
    assert key in message and text in message and "\n" not in message


def test_a_box_of_asset_prices_must_hold_valid_prices():
    with pytest.raises(ProblemError, match=r"solver.region.low.*asset prices must be positive"):
        bsde.load_problem("max_call", {"equation.dim": 1, "solver.region": {"low": -10, "high": 120}})
    with pytest.raises(ProblemError, match=r"solver.region.low.*log box needs positive corners"):
        bsde.load_problem("hjb", {"equation.dim": 1, "solver.region": {"low": -1, "high": 1, "log": True}})
    problem = bsde.load_problem("max_call", {"equation.dim": 2, "solver.region": {"low": [80, 90], "high": 120}})
    assert problem.solver.region.bounds(2) == ((80.0, 90.0), (120.0, 120.0))


def test_starts_fill_the_box_and_a_log_box_log_uniformly():
    gen = torch.Generator().manual_seed(0)
    uniform = draw_starts(Region(low=[-1, 2], high=[1, 2]), 2, 20000, gen, device="cpu", dtype=torch.float64)
    assert uniform[:, 0].min() >= -1 and uniform[:, 0].max() <= 1 and torch.all(uniform[:, 1] == 2)
    assert abs(float(uniform[:, 0].mean())) < 0.03
    logged = draw_starts(Region(low=50, high=200, log=True), 1, 20000, gen, device="cpu", dtype=torch.float64)
    assert 50 <= float(logged.min()) and float(logged.max()) <= 200
    # log-uniform: the median is the geometric mean 100, not the midpoint 125
    assert abs(float(logged.median()) - 100.0) < 3.0


def test_box_coordinates_map_the_box_onto_minus_one_one():
    region = Region(low=[80, -1, 5], high=[120, 1, 5])
    x = torch.tensor([[80.0, 1.0, 5.0], [100.0, 0.0, 5.0]], dtype=torch.float64)
    assert torch.allclose(box_coordinates(region, x), torch.tensor([[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
                                                                   dtype=torch.float64))
    logged = Region(low=50, high=200, log=True)
    assert box_coordinates(logged, torch.tensor([[100.0]], dtype=torch.float64)).item() == pytest.approx(0.0)


def test_diagonal_points():
    assert Region(low=[0, 10], high=[1, 20]).diagonal(2, [0.0, 0.5, 1.0]) == [[0, 10], [0.5, 15], [1, 20]]
    assert Region(low=50, high=200, log=True).diagonal(1, [0.5])[0][0] == pytest.approx(100.0)


@pytest.mark.parametrize("problem", ["hjb", "max_call"])
def test_paths_from_one_start_per_path_equal_separate_simulations(problem):
    equation = bsde.load_problem(problem, {"equation.dim": 3}).equation
    starts = torch.tensor([[0.5, 1.0, 1.5], [2.0, 1.0, 0.5]], dtype=torch.float64) * (50 if problem == "max_call" else 1)
    together = simulate_paths(equation.process, starts, 1.0, 4, 2, generator=torch.Generator().manual_seed(3))
    for i in range(2):
        alone = simulate_paths(equation.process, starts[i], 1.0, 4, 2, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(together.x[i], alone.x[i], rtol=1e-12)
    assert math.isclose(together.dt, 0.25)


def test_a_custom_equation_takes_a_region():
    equation = bsde.custom_equation(dim=2, x0=100.0, process=bsde.GBM(0.05, 0.2), name="call",
                                    terminal=lambda x: (x.amax(-1) - 100.0).relu(), driver=lambda t, x, y, z: -0.05 * y)
    problem = bsde.as_problem(equation, {"region": {"low": 80, "high": 120, "log": True}})
    assert problem.solver.region.bounds(2) == ((80.0, 80.0), (120.0, 120.0))
    with pytest.raises(ProblemError, match=r"solver.region.low: not a valid starting point"):
        bsde.as_problem(equation, {"region": {"low": [-1, 80], "high": 120}})

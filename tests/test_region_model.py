"""RegionBSDE: Y_0 and Z_0 as functions of the start, Z_0 tied to sigma^T grad Y_0."""

from __future__ import annotations

import torch

import bsde
from bsde.model import DeepBSDE
from bsde.region_model import RegionBSDE, make_model
from bsde.trainer import sample

F64 = torch.float64


def region_model(problem: bsde.Problem) -> RegionBSDE:
    model = make_model(problem.equation, problem.solver)
    model.reset_parameters(torch.Generator().manual_seed(0), (0.0, 0.0))
    with torch.no_grad():  # a start network that is not flat (its last layer starts at zero)
        model.start_net.layers[-1].weight.normal_(generator=torch.Generator().manual_seed(1))
        model.y_offset, model.y_scale = 3.0, 2.0
    return model.eval()


def test_make_model_follows_the_settings():
    point = bsde.load_problem("hjb", {"equation.dim": 2})
    region = bsde.load_problem("hjb", {"equation.dim": 2, "solver.region": {"low": -1, "high": 1}})
    assert type(make_model(point.equation, point.solver)) is DeepBSDE
    assert isinstance(make_model(region.equation, region.solver), RegionBSDE)


def test_z0_is_sigma_transpose_grad_y0():
    problem = bsde.load_problem("max_call", {"equation.dim": 2, "equation.correlation": 0.3,
                                             "solver.region": {"low": 80, "high": 120, "log": True}})
    model = region_model(problem)
    x = torch.tensor([[90.0, 110.0], [100.0, 85.0]], dtype=F64)
    values, z = model.start(x)
    h = 1e-4
    grad = torch.stack([(model.value(x + h * e) - model.value(x - h * e)) / (2 * h)
                        for e in torch.eye(2, dtype=F64)], dim=1)
    assert torch.allclose(z, problem.equation.process.diffusion_transpose(x, grad), rtol=1e-6)
    assert torch.allclose(values, model.value(x))
    assert torch.allclose(model.z_at(0, x), z)


def test_each_path_starts_from_its_own_value():
    problem = bsde.load_problem("hjb", {"equation.dim": 2, "solver.time_steps": 3,
                                        "solver.region": {"low": -1, "high": 1}})
    model = region_model(problem)
    paths = sample(problem.equation, problem.solver, 5, torch.Generator().manual_seed(2), "cpu", region=True)
    assert not torch.allclose(paths.x[0, 0], paths.x[1, 0])  # the starts differ
    y_start, z0 = model.start(paths.x[:, 0])
    z = torch.cat([z0.unsqueeze(1), model.z_scale * model.nets(paths.x[:, 1:3])], dim=1)
    expected = model.march(paths.x, paths.dw, paths.dt, z, y_start=y_start)
    assert torch.allclose(model(paths.x, paths.dw, paths.dt), expected)
    x0 = torch.tensor([problem.equation.x_start], dtype=F64)
    assert torch.allclose(model.y_start, model.value(x0)[0]) and model.z_start.shape == (2,)

"""The solution a solve keeps: delta = sigma^{-T} Z_0, gamma, u and grad over a region, z(n, x), save and load."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import bsde
from bsde.errors import BSDEError, ProblemError
from bsde.processes import uniform_correlation_root
from bsde.region_model import JACKKNIFE_GROUPS
from bsde.io import _host
from bsde.solution import CONFIG_FILE, FORMAT, SOLUTION_FILE, OutsideRegionWarning, Solution, check_save_folder

from conftest import TINY

POINT = {"equation.dim": 2, "equation.correlation": 0.3, "equation.vol": [0.2, 0.3], "solver.time_steps": 4,
         "solver.iterations": 40, "solver.batch_size": 16, "solver.valid_size": 16, "solver.log_every": 20}
REGION = {**TINY, "solver.region": {"low": -1, "high": 1}}


@pytest.fixture(scope="module")
def point_result() -> bsde.SolveResult:
    return bsde.solve(bsde.load_problem("max_call", POINT), seed=0, threads=1, device="cpu")


@pytest.fixture(scope="module")
def region_result() -> bsde.SolveResult:
    return bsde.solve(bsde.load_problem("hjb", REGION), seed=0, threads=1, device="cpu")


def test_delta_is_sigma_inverse_transpose_z0(point_result):
    """Z = sigma^T grad u with sigma = diag(vol S) C^{1/2}: delta = C^{-1/2} z0 / (vol S), by a dense solve here."""
    vol, spot, rho = np.array([0.2, 0.3]), np.array([100.0, 100.0]), 0.3
    corr = np.array([[1.0, rho], [rho, 1.0]])
    values, vectors = np.linalg.eigh(corr)
    sigma = np.diag(vol * spot) @ (vectors @ np.diag(np.sqrt(values)) @ vectors.T)
    expected = np.linalg.solve(sigma.T, np.array(point_result.z0))
    assert np.allclose(point_result.delta, expected, rtol=1e-10)
    assert point_result.to_dict()["delta"] == point_result.delta and len(point_result.gamma_diag) == 2
    assert point_result.gamma.shape == (2, 2) and "first step" in point_result.gamma_source


def test_a_point_solve_answers_at_x0_only(point_result):
    x0 = [100.0, 100.0]
    assert point_result.u(x0)[0] == point_result.y0 == point_result.u0
    assert np.allclose(point_result.grad([x0, x0]), [point_result.delta] * 2)
    with pytest.raises(ProblemError, match="at x0 only"):
        point_result.u([101.0, 100.0])
    with pytest.raises(ProblemError, match=r"an \(n, 2\) array"):
        point_result.u([1.0, 2.0, 3.0])
    # a number sets every coordinate, as bsde eval --x 100 does (QA: the API refused shape ())
    assert point_result.u(100.0)[0] == point_result.y0 and np.allclose(point_result.grad(100), [point_result.delta])


def test_z_at_steps(point_result):
    x = np.array([[120.0, 90.0], [80.0, 110.0]])
    # Z_N = sigma^T grad g = C^{1/2} (vol S o e_argmax) above the strike
    scaled = torch.tensor([[0.2 * 120.0, 0.0], [0.0, 0.3 * 110.0]], dtype=torch.float64)
    assert np.allclose(point_result.z(4, x), uniform_correlation_root(scaled, 0.3).numpy())
    assert point_result.z(2, x).shape == (2, 2)
    with pytest.raises(ProblemError, match="step 0..4"):
        point_result.z(5, x)


def test_a_region_network_far_from_the_value_at_x0_is_a_warning(region_result, point_result):
    """HJB over a region: y0 is V at x0 (bsde.control_bound), u(x) the network; 60 iterations leave them apart."""
    gap = abs(region_result.u([region_result.solution.x0])[0] / region_result.y0 - 1)
    warned = [w for w in region_result.warnings if w.startswith("over the region")]
    assert gap > 0.01 and len(warned) == 1 and f"{100 * gap:.2g}% from y0" in warned[0]
    assert not any(w.startswith("over the region") for w in point_result.warnings)


def test_a_region_solve_warns_where_it_extrapolates(region_result):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        region_result.u([[0.5, -1.0]])  # inside (the boundary included): no warning
    assert region_result.solution.outside([[0.5, -1.0], [1.5, 0.0], [0.0, -3.0]]) == 2
    for evaluate in (region_result.u, region_result.grad, region_result.solution.hessian):
        with pytest.warns(OutsideRegionWarning, match=r"1 of 2 points lie outside the trained box \[-1.0, 1.0\]"):
            evaluate([[0.0, 0.0], [3.0, 0.0]])


def test_a_region_solve_has_u_grad_and_hessian_everywhere(region_result):
    points = np.array([[0.2, -0.4], [0.7, 0.1]])
    u, grad = region_result.u(points), region_result.grad(points)
    hessian = region_result.solution.hessian(points)
    h = 1e-4
    for k in range(2):
        for i in range(2):
            step = np.zeros(2)
            step[i] = h
            slope = (region_result.u(points[k] + step)[0] - region_result.u(points[k] - step)[0]) / (2 * h)
            assert grad[k, i] == pytest.approx(slope, rel=1e-5, abs=1e-8)
            column = (region_result.grad(points[k] + step)[0] - region_result.grad(points[k] - step)[0]) / (2 * h)
            assert np.allclose(hessian[k, :, i], column, rtol=1e-4, atol=1e-7)
    assert u.shape == (2,) and np.allclose(hessian, hessian.transpose(0, 2, 1))
    assert region_result.gamma.shape == (2, 2) and "Hessian of the network" in region_result.gamma_source
    assert region_result.refit is not None and region_result.refit["paths"] >= 1 << 12
    tensor = region_result.u(torch.tensor(points))
    assert np.allclose(tensor, u)


def test_standard_errors_are_the_jackknife_over_the_refits_replicates(region_result):
    """Independent of replicate_deviations: each replicate put in the last layer of a copy of the model, its u,
    grad and Hessian by the ordinary methods, the jackknife variance (K - 1)/K sum (q_k - mean)^2 by hand."""
    solution = region_result.solution
    points = np.array([[0.2, -0.4], [0.7, 0.1], list(solution.x0)])
    errors = solution.standard_errors(points)
    model = solution.model
    last = model.start_net.layers[-1]
    replicates = model.start_replicates.clone()
    assert model.has_replicates and replicates.shape == (JACKKNIFE_GROUPS, 1 + last.weight.shape[1])
    kept = (model.y0.detach().clone(), last.weight.detach().clone())
    answers = []
    try:
        for c_and_w in replicates:
            with torch.no_grad():
                model.y0.copy_(c_and_w[0] - last.bias[0])
                last.weight.copy_(c_and_w[1:].reshape(1, -1))
            answers.append((solution.u(points), solution.grad(points), solution.hessian(points)))
    finally:
        with torch.no_grad():
            model.y0.copy_(kept[0])
            last.weight.copy_(kept[1])
    factor = (JACKKNIFE_GROUPS - 1) / JACKKNIFE_GROUPS
    for i, got in enumerate((errors.u, errors.grad, errors.hessian)):
        values = np.stack([a[i] for a in answers])
        expected = np.sqrt(factor * ((values - values.mean(0)) ** 2).sum(0))
        assert got.shape == values.shape[1:] and np.allclose(got, expected, rtol=1e-8, atol=1e-14)
    assert errors.u.min() > 0 and np.all(errors.grad > 0)
    # at x0: the result's standard errors are these
    assert np.allclose(solution.delta_stderr, errors.grad[2]) and np.allclose(solution.gamma_stderr, errors.hessian[2])
    assert np.allclose(region_result.delta_stderr, errors.grad[2])
    assert np.allclose(region_result.gamma_diag_stderr, np.diagonal(errors.hessian[2]))


def test_beyond_three_dimensions_the_basis_says_the_bias_was_larger(region_result):
    """QA: over a box at d = 5 and 10 the Greeks missed by 2-10 (gamma: up to 56) of these standard errors."""
    assert region_result.greeks_stderr_basis == "the refit's jackknife (not the networks' bias)"  # d = 2
    wider = bsde.solve(bsde.load_problem("hjb", {**REGION, "equation.dim": 4}), seed=0, threads=1, device="cpu")
    assert "check against bsde reference --greeks" in wider.greeks_stderr_basis


def test_only_a_refitted_region_has_standard_errors(point_result):
    with pytest.raises(ProblemError, match="a point solve has none: train over a box"):
        point_result.solution.standard_errors(point_result.solution.x0)
    assert point_result.delta_stderr is None and point_result.solution.delta_stderr is None
    # nor an error bar on its gamma: the first step's Monte Carlo error would leave out Z_1's network error
    assert point_result.gamma_diag is not None and point_result.solution.gamma_stderr is None
    assert point_result.gamma_diag_stderr is None and point_result.greeks_stderr_basis is None
    unfitted = bsde.solve(bsde.load_problem("hjb", {**REGION, "solver.refit": False}), seed=0, threads=1)
    assert unfitted.refit is None and unfitted.delta_stderr is None and unfitted.gamma_diag_stderr is None
    with pytest.raises(ProblemError, match=r"this region solve has none \(solved with solver.refit: false"):
        unfitted.solution.standard_errors([[0.0, 0.0]])


def test_save_and_load_give_the_same_answers(region_result, tmp_path: Path):
    folder = region_result.solution.save(tmp_path / "saved")
    assert (folder / SOLUTION_FILE).is_file() and (folder / CONFIG_FILE).is_file()
    torch.load(folder / SOLUTION_FILE, weights_only=True)  # plain tensors and numbers only
    loaded = Solution.load(folder)
    points = np.array([[0.3, 0.3], [-0.5, 0.9]])
    assert np.allclose(loaded.u(points), region_result.u(points), rtol=1e-12)
    assert np.allclose(loaded.grad(points), region_result.grad(points), rtol=1e-12)
    assert np.allclose(loaded.delta, region_result.delta) and loaded.u0 == region_result.y0
    assert loaded.u0_error == region_result.error_estimate is not None  # the solve's estimate of y0 travels along
    assert loaded.u0_error_basis == region_result.error_basis
    assert np.allclose(loaded.standard_errors(points).hessian, region_result.solution.standard_errors(points).hessian,
                       rtol=1e-12)


def test_a_save_from_before_standard_errors_loads_without_them(region_result, tmp_path: Path):
    """A solution.pt written before the refit kept its jackknife replicates still loads, with the same answers."""
    folder = region_result.solution.save(tmp_path / "old")
    data = torch.load(folder / SOLUTION_FILE, weights_only=True)
    del data["model"]["start_replicates"]
    del data["u0_error"], data["u0_error_basis"]  # kept only since 2026-11-30
    torch.save(data, folder / SOLUTION_FILE)
    loaded = Solution.load(folder)
    assert loaded.u0_error is None and loaded.u0_error_basis is None
    points = np.array([[0.3, 0.3]])
    assert np.allclose(loaded.u(points), region_result.u(points), rtol=1e-12)
    assert not loaded.has_standard_errors and loaded.delta_stderr is None
    with pytest.raises(ProblemError, match="saved before bsde kept them"):
        loaded.standard_errors(points)


def test_a_saved_point_solve_keeps_its_gamma(point_result, tmp_path: Path):
    loaded = Solution.load(point_result.solution.save(tmp_path / "point"))
    assert np.allclose(loaded.gamma, point_result.gamma) and np.allclose(loaded.delta, point_result.delta)


def test_load_refuses_what_it_cannot_trust(region_result, tmp_path: Path):
    folder = region_result.solution.save(tmp_path / "saved")
    with pytest.raises(ProblemError, match="no such folder"):
        Solution.load(tmp_path / "missing")
    with pytest.raises(ProblemError, match="not a saved solution"):
        Solution.load(tmp_path)
    # another version
    data = torch.load(folder / SOLUTION_FILE, weights_only=True)
    torch.save({**data, "bsde_version": "0.0.1"}, folder / SOLUTION_FILE)
    with pytest.raises(ProblemError, match=r"saved by bsde 0.0.1, this is bsde"):
        Solution.load(folder)
    # an older format: read, unless a correlation matrix changed what its Z means (see bsde.checkpoint.FORMAT)
    torch.save({**data, "format": FORMAT - 1}, folder / SOLUTION_FILE)
    assert Solution.load(folder).u0 == region_result.solution.u0
    torch.save({**data, "format": FORMAT - 1, "config": {**data["config"], "equation": {
        **data["config"]["equation"], "correlation": [[1.0, 0.0], [0.0, 1.0]]}}}, folder / SOLUTION_FILE)
    with pytest.raises(ProblemError, match="before a correlation matrix was applied through its symmetric root"):
        Solution.load(folder)
    # weights of another configuration
    torch.save({**data, "model": {k: v[..., :1] if v.ndim else v for k, v in data["model"].items()}},
               folder / SOLUTION_FILE)
    with pytest.raises(ProblemError, match="weights do not fit the saved configuration"):
        Solution.load(folder)
    # a config.yaml that no longer matches the weights
    torch.save(data, folder / SOLUTION_FILE)
    config = yaml.safe_load((folder / CONFIG_FILE).read_text())
    config["equation"]["dim"] = 3
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(config))
    with pytest.raises(ProblemError, match=r"config.yaml: differs .*equation.dim: trained with 2, file says 3"):
        Solution.load(folder)
    # not a torch file at all, or one with more than tensors (no advice to load it with weights_only=False)
    (folder / SOLUTION_FILE).write_text("hello")
    with pytest.raises(ProblemError, match="not a readable solution"):
        Solution.load(folder)
    torch.save({"format": 1, "config": {}, "code": Path(".")}, folder / SOLUTION_FILE)
    with pytest.raises(ProblemError, match=r"not a readable solution \(damaged, or holds more than tensors") as info:
        Solution.load(folder)
    assert "weights_only" not in str(info.value)
    with pytest.raises(ProblemError, match="is a file, expected the folder written by bsde solve"):
        Solution.load(folder / SOLUTION_FILE)
    (folder / SOLUTION_FILE).unlink()
    (folder / SOLUTION_FILE).mkdir()
    with pytest.raises(ProblemError, match="solution.pt: is a folder, expected solution"):
        Solution.load(folder)


def test_save_folder_checks(tmp_path: Path):
    (tmp_path / "other.txt").write_text("keep me")
    with pytest.raises(ProblemError, match="holds other files"):
        check_save_folder(tmp_path)
    with pytest.raises(ProblemError, match="is a file"):
        check_save_folder(tmp_path / "other.txt")
    assert (tmp_path / "other.txt").read_text() == "keep me"
    assert check_save_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / CONFIG_FILE).write_text("a config.yaml of the user's, with no solution beside it")
    with pytest.raises(ProblemError, match=r"holds other files \(config.yaml\)"):
        check_save_folder(tmp_path / "mine")
    # an interrupted save's temp file (its writer gone) does not make the folder another's (QA)
    (tmp_path / "killed").mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "killed" / f".{SOLUTION_FILE}.{_host()}.{int(gone.stdout)}.k3j2x9_a.tmp").write_bytes(b"partial")
    assert check_save_folder(tmp_path / "killed") == tmp_path / "killed"


def test_save_and_load_name_a_folder_that_is_not_a_path(point_result):
    for call in (lambda: point_result.solution.save(5), lambda: Solution.load(None)):
        with pytest.raises(BSDEError, match=r"^folder: expected a folder \(a str or pathlib.Path\), got "):
            call()


def test_save_in_python_keeps_what_it_does_not_own_and_plain_summaries(point_result, tmp_path: Path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("keep me")
    with pytest.raises(ProblemError, match="holds other files"):
        point_result.solution.save(tmp_path / "project")
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["notes.txt"]
    # numpy numbers and arrays in the summary become plain numbers and lists, which load reads back
    folder = point_result.solution.save(tmp_path / "saved", summary={"y0": np.float64(point_result.y0),
                                                                     "delta": np.array(point_result.delta)})
    summary = torch.load(folder / SOLUTION_FILE, weights_only=True)["summary"]
    assert summary == {"y0": point_result.y0, "delta": list(point_result.delta)}
    Solution.load(folder)
    with pytest.raises(ProblemError, match="summary.when: a saved summary holds numbers, strings, lists and dicts; "
                                           "got object"):
        point_result.solution.save(tmp_path / "other", summary={"when": object()})


def test_load_names_a_device_it_cannot_use(point_result, tmp_path: Path):
    folder = point_result.solution.save(tmp_path / "saved")
    with pytest.raises(BSDEError, match="unknown device 'gpu'"):
        Solution.load(folder, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(BSDEError, match="torch sees no CUDA device"):
            Solution.load(folder, device="cuda")


def test_a_result_read_back_from_json_has_no_model(point_result):
    data = point_result.to_dict()
    assert "solution" not in data and math.isfinite(data["y0"])
    bare = bsde.SolveResult(**{k: v for k, v in data.items() if k != "history"})
    with pytest.raises(BSDEError, match="no trained model"):
        bare.u([100.0, 100.0])
    assert bare.gamma is None


def test_a_point_solve_takes_x0_written_in_float32():
    """torch's default float32 rounds 0.1 by 1.5e-9: that is still x0; a point 1e-4 away is not."""
    problem = bsde.load_problem("hjb", {**REGION, "solver.region": None, "equation.x0": 0.1, "solver.iterations": 10})
    solution = bsde.solve(problem, seed=0, threads=1).solution
    exact = solution.u([0.1, 0.1])
    assert np.array_equal(solution.u(torch.tensor([0.1, 0.1])), exact)
    assert np.array_equal(solution.grad(np.array([0.1, 0.1], dtype=np.float32)), solution.grad([0.1, 0.1]))
    assert solution.z(0, torch.tensor([[0.1, 0.1]])).shape == (1, 2)
    with pytest.raises(ProblemError, match="at x0 only"):
        solution.u([0.1001, 0.1])

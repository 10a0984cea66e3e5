"""`bsde bench --quick` end to end, and the per-step networks against the stacked ones. Timings are never asserted."""

import json

import pytest
import torch
from typer.testing import CliRunner

from bsde.bench.worker import ScaleResult, fit
from bsde.bench.cases import PEER_MS_PER_ITERATION, Timing
from bsde.networks import StackedGradientNets
from bsde.per_step import PerStepGradientNets

runner = CliRunner()
QUICK = ["bench", "--quick", "--device", "cpu", "--threads", "1"]
PEER_CASES = ("hjb 100-d float64", "allen_cahn 100-d float64", "default_risk 100-d float64")
SECTIONS = ("machine", "command", "options", "startup", "speed", "loop", "accuracy", "scale", "scale_fit", "wall_s",
            "checks_passed")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One real quick bench with --json (the slow part), then the same report printed as tables."""
    import bsde.cli.bench as command
    from bsde.cli.app import app

    folder = tmp_path_factory.mktemp("bench")
    reports = []

    def keep(*args, **kwargs):
        reports.append(real(*args, **kwargs))
        return reports[-1]

    real = command.run_bench
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(command, "run_bench", keep)
        result = runner.invoke(app, [*QUICK, "--json", "--out", str(folder)])
        assert result.exit_code == 0, result.output
        patch.setattr(command, "run_bench", lambda *args, **kwargs: reports[0])
        tables = runner.invoke(app, [*QUICK, "--out", str(folder / "again")])
    return result, tables, folder


def test_quick_bench_json_is_one_object(quick_run):
    result, _, _ = quick_run
    data = json.loads(result.stdout)  # stdout holds exactly one JSON object
    assert set(SECTIONS) <= set(data)
    assert "speed:" in result.stderr  # progress goes to stderr


def test_quick_bench_prints_tables(quick_run):
    _, tables, folder = quick_run
    assert tables.exit_code == 0, tables.output
    for title in ("Start-up", "Per-iteration speed", "Batched vs per-step", "Time to accuracy", "Scale", "Growth with d"):
        assert title in tables.stdout
    assert "hjb 100-d float64" in tables.stdout and "{" not in tables.stdout.splitlines()[0]
    assert (folder / "again" / "bench.md").exists()


def test_quick_bench_writes_json_and_markdown(quick_run):
    _, _, folder = quick_run
    data = json.loads((folder / "bench.json").read_text())
    assert set(SECTIONS) <= set(data)
    assert data["checks_passed"] and data["loop"]["agree"]
    assert data["command"].startswith("bsde bench --quick") and data["options"]["quick"]
    for key in ("cpu", "logical_cores", "memory_gib", "device", "torch", "numpy", "python", "torch_threads", "date"):
        assert key in data["machine"]
    assert data["machine"]["torch_threads"] == 1
    assert [s["case"] for s in data["speed"]] == ["hjb 100-d float64", "hjb 100-d float32", "hjb 100-d float64 controlled",
                                                   "allen_cahn 100-d float64", "default_risk 100-d float64"]
    assert [s["dtype"] for s in data["speed"]] == ["float64", "float32", "float64", "float64", "float64"]
    assert len(data["skipped"]) == 2 and all("compiled" in text for text in data["skipped"])  # not in quick mode
    for row in data["speed"]:
        assert row["timing"]["median_s"] > 0 and row["gflops"] > 0 and row["matmul_peak_gflops"] > 0
        # the floor was timed in as many blocks as the iterations, and the ratio is per pair of blocks
        assert row["floor"]["samples"] == row["timing"]["samples"] == row["floor_ratio"]["samples"]
        assert row["floor_gflops"] == pytest.approx(row["flops_per_iteration"] / row["floor"]["median_s"] / 1e9)
        assert row["floor_ratio"]["q25_s"] <= row["floor_ratio"]["median_s"] <= row["floor_ratio"]["q75_s"]
        assert row["warmup_s"] > 0 and not row["compiled"]
    # the peer's figure goes with its problem in its own configuration (plain float64) only
    for row in data["speed"]:
        peer = PEER_MS_PER_ITERATION[row["problem"]] if row["case"] in PEER_CASES else None
        assert row["peer_ms"] == peer
        if peer is None:
            assert row["peer_ratio"] is None
        else:
            assert row["peer_ratio"] == pytest.approx(peer / (1e3 * row["timing"]["median_s"]))
    assert [a["problem"] for a in data["accuracy"]] == ["hjb", "allen_cahn"]
    assert all(len(a["runs"]) == 1 and a["reference"] > 0 for a in data["accuracy"])
    assert sorted((s["problem"], s["dtype"], s["dim"]) for s in data["scale"]) == [
        ("allen_cahn", "float64", 10), ("allen_cahn", "float64", 100), ("hjb", "float32", 10), ("hjb", "float32", 100),
        ("hjb", "float64", 10), ("hjb", "float64", 100)]
    assert [(f["problem"], f["dtype"]) for f in data["scale_fit"]] == [
        ("hjb", "float64"), ("hjb", "float32"), ("allen_cahn", "float64")]
    assert all(s["error"] is None and s["peak_rss_mb"] > 0 and s["parameters"] > 0 for s in data["scale"])
    assert all(s["floor"]["median_s"] > 0 and s["floor_ratio"]["samples"] == s["timing"]["samples"] for s in data["scale"])
    startup = data["startup"]
    assert startup["first_solve_s"] > 0 and startup["second_solve_s"] > 0
    assert startup["one_time_s"] == pytest.approx(max(startup["first_solve_s"] - startup["second_solve_s"], 0.0))
    # the reading commands, each a fresh process that succeeded (a failing one is an error, not a time)
    assert list(startup["commands"]) == ["--help", "list", "show hjb"]
    assert all(seconds > 0 for seconds in startup["commands"].values())
    assert isinstance(startup["bytecode_cached"], bool)
    markdown = (folder / "bench.md").read_text()
    assert "| `bsde list`, whole process (goal 0.5) |" in markdown
    for title in ("Per-iteration speed", "Batched vs per-step", "Time to accuracy", "Scale", "Growth with d"):
        assert f"## {title}" in markdown
    assert "| hjb 100-d float64 |" in markdown and "bsde bench --quick" in markdown
    hjb_row = next(line for line in markdown.splitlines() if line.startswith("| hjb 100-d float64 |"))
    cells = [cell.strip() for cell in hjb_row.strip("|").split("|")]
    assert float(cells[-2]) == PEER_MS_PER_ITERATION["hjb"]  # the table shows the peer figure the run used
    assert float(cells[-1]) == pytest.approx(data["speed"][0]["peer_ratio"], rel=5e-3)


def test_bench_runs_only_the_sections_asked_for(tmp_path):
    from bsde.cli.app import app

    result = runner.invoke(app, [*QUICK, "--only", "loop", "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["options"]["sections"] == ["loop"] and data["loop"]["agree"]
    assert data["startup"] is None and data["speed"] == [] and data["accuracy"] == [] and data["scale"] == []
    markdown = (tmp_path / "bench.md").read_text()
    assert "## Batched vs per-step" in markdown and "## Per-iteration speed" not in markdown
    assert "--only loop" in data["command"]


def test_bench_rejects_an_unknown_section(tmp_path):
    from bsde.cli.app import app

    result = runner.invoke(app, ["bench", "--quick", "--only", "speed,sped", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown bench section 'sped'; choose from startup, speed, loop, profile, accuracy, scale"]
    assert not (tmp_path / "bench.json").exists()


def test_bench_rejects_bad_dims(tmp_path):
    from bsde.cli.app import app

    result = runner.invoke(app, ["bench", "--quick", "--dims", "10,abc", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Invalid value for '--dims'" in result.output
    assert not (tmp_path / "bench.json").exists()
    for empty in ("10,,100", "10,", ""):
        result = runner.invoke(app, ["bench", "--quick", "--dims", empty, "--out", str(tmp_path)])
        assert result.exit_code == 2 and "expected comma-separated integers" in result.output, empty
    result = runner.invoke(app, ["bench", "--quick", "--dims", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "'--dims': expected positive dimensions" in result.output


def test_per_step_networks_check_shapes():
    looped = PerStepGradientNets(3, 4, [5], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\(batch, 3, 4\)"):
        looped(torch.zeros(8, 2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="another number"):
        looped.load_from_stacked(StackedGradientNets(2, 4, [5], dtype=torch.float64))


def test_scale_fit_reads_growth_per_decade():
    def case(dim, seconds, params):
        return ScaleResult("hjb", dim, [dim], params, None, Timing(seconds, seconds, seconds, 1), 100.0 + dim)

    growth = fit("hjb", [case(10, 0.001, 100), case(100, 0.01, 1000), case(1000, 0.1, 10000)])
    assert growth.dims == [10, 100, 1000]
    assert growth.time_exponent == pytest.approx(1.0)
    assert growth.time_ratio_per_10x == pytest.approx([10.0, 10.0])
    assert growth.parameter_exponent == pytest.approx(1.0)


@pytest.mark.parametrize(("dim", "hidden"), [(6, [7, 5]), (20, [9, 4])])
def test_floor_does_the_matmul_work_of_an_iteration(dim, hidden):
    """torch's FLOP counter (independent of network_flops) sees the same matmul FLOPs in a training step's forward
    and backward as in the floor, and both are network_flops (the second case's layers 20 -> 9 and 9 -> 4 are wide:
    their weights are stored transposed, bsde.networks)."""
    from torch.utils.flop_counter import FlopCounterMode

    from bsde.bench.cases import matmul_floor, network_flops
    from bsde.model import DeepBSDE, terminal_loss
    from bsde.problem import load_problem
    from bsde.trainer import sample

    problem = load_problem("hjb", {"equation.dim": dim, "solver.time_steps": 4, "solver.batch_size": 8,
                                   "solver.hidden": hidden, "solver.dtype": "float64"})
    equation, settings = problem.equation, problem.solver
    cpu = torch.device("cpu")
    model = DeepBSDE(equation, settings.time_steps, settings.widths(equation.dim), dtype=torch.float64)
    model.reset_parameters(torch.Generator().manual_seed(0), (0.0, 1.0))
    paths = sample(equation, settings, settings.batch_size, torch.Generator().manual_seed(1), cpu)

    def matmul_flops(work):
        with FlopCounterMode(display=False) as counter:
            work()
        counts = counter.get_flop_counts()["Global"]
        return sum(n for op, n in counts.items() if "mm" in str(op) or "matmul" in str(op))

    assert [linear.wide_input for linear in model.nets.linears] == [dim > 2 * w for w in hidden[:1]] + [
        a > 2 * b for a, b in zip(hidden, hidden[1:])] + [False]
    iteration = matmul_flops(lambda: terminal_loss(model(paths.x, paths.dw, paths.dt),
                                                   equation.terminal(paths.x[:, -1])).backward())
    assert iteration == matmul_flops(matmul_floor(problem, cpu)) == network_flops(problem)


def test_floor_peak_and_profiled_step_run_in_the_training_steps_matmul_precision(monkeypatch):
    """On CUDA the training step's float32 matmuls run in TF32 by default: the floor, the peak and the profiled
    step must use the same precision (bsde.runtime.matmul_precision), or the ratios compare TF32 with IEEE."""
    from contextlib import contextmanager

    import bsde
    from bsde.bench import cases

    entered = []

    @contextmanager
    def spy(settings, device):
        entered.append((settings.dtype, settings.tf32, device.type))
        yield

    monkeypatch.setattr(cases, "matmul_precision", spy)
    cpu = torch.device("cpu")
    problem = bsde.load_problem("hjb", {"equation.dim": 4, "solver.time_steps": 3, "solver.batch_size": 8,
                                        "solver.dtype": "float32", "solver.tf32": False})
    cases.matmul_floor(problem, cpu)()
    assert entered == [("float32", False, "cpu")]
    cases.matmul_peak(16, problem.solver, cpu, repeats=1)
    assert len(entered) == 3 and set(entered) == {("float32", False, "cpu")}  # its warm-up and one timed product
    model = cases.DeepBSDE(problem.equation, 3, [6], dtype=torch.float32)
    model.reset_parameters(torch.Generator().manual_seed(0), (0.0, 1.0))
    cases._adam_step(model, problem, torch.Generator().manual_seed(1), cpu)()
    assert len(entered) == 4


def test_bench_keeps_a_bench_md_or_json_it_did_not_write(tmp_path):
    from bsde.cli.app import app

    (tmp_path / "bench.md").write_text("my notes\n")
    result = runner.invoke(app, ["bench", "--quick", "--only", "loop", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'bench.md'}: not written by bsde bench; not replacing it: move it away, or give another "
        "folder (--out DIR)"]
    assert (tmp_path / "bench.md").read_text() == "my notes\n" and not (tmp_path / "bench.json").exists()
    (tmp_path / "bench.md").unlink()
    (tmp_path / "bench.json").write_text('{"mine": 1}')
    result = runner.invoke(app, ["bench", "--quick", "--only", "loop", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "bench.json: not written by bsde bench" in result.stderr
    assert (tmp_path / "bench.json").read_text() == '{"mine": 1}'


def test_a_start_up_child_that_hangs_is_stopped(monkeypatch):
    from bsde.bench import accuracy
    from bsde.errors import BSDEError

    monkeypatch.setattr(accuracy, "STARTUP_TIMEOUT_S", 0.5)
    with pytest.raises(BSDEError, match=r"sleeping took over 0.5 s; stopped"):
        accuracy._fresh_python("import time; time.sleep(30)", "sleeping")

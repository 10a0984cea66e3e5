"""`bsde compare`: reports in a folder, its README index, --fail-above; the agreement sentence."""

import json
import os

import pytest
from typer.testing import CliRunner

from bsde.cli.app import app
from bsde.compare import Published, agreement, rounding
from bsde.reference import ReferenceResult
from conftest import tiny_args

runner = CliRunner()
#: hjb in dim 2 (semi-analytic reference, no published value), 30 iterations, one thread
TINY = [*tiny_args(**{"solver.iterations": 30}), "--threads", "1", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One comparison of 2 seeds written to a fresh folder, with --fail-above far off."""
    folder = tmp_path_factory.mktemp("cmp") / "results"  # does not exist yet: compare creates it
    result = runner.invoke(app, ["compare", "hjb", "--seeds", "2", *TINY, "--out", str(folder), "--fail-above", "1e9"])
    assert result.exit_code == 0, result.output
    return folder, result


def test_json_report_holds_every_run(results):
    folder, _ = results
    data = json.loads((folder / "hjb.json").read_text())
    assert data["format"] == "bsde-compare/1" and data["dim"] == 2
    assert [run["seed"] for run in data["runs"]] == [0, 1]
    assert all(run["history"] and run["rel_error"] is not None for run in data["runs"])
    summary = data["summary"]
    assert summary["reference_method"] == "semi-analytic" and summary["reference_basis"] == "bsde.reference"
    assert summary["y0_mean"] == pytest.approx(sum(run["y0"] for run in data["runs"]) / 2)
    assert summary["rel_error"] == pytest.approx(abs(summary["y0_mean"] - summary["reference"]) / summary["reference"])
    assert data["reference"]["details"]["quad_error"] is not None
    env = data["environment"]
    for key in ("platform", "cpu", "cores", "device", "torch", "numpy", "python", "threads", "seeds", "date"):
        assert env[key] not in (None, "")
    assert env["threads"] == 1 and env["seeds"] == [0, 1]
    assert env["command"].startswith("bsde compare hjb --seeds 2 --set equation.dim=2")
    assert "--threads 1" in env["command"]  # what decides the digits is in the command that reruns the row (QA)


def test_the_command_records_default_seeds_and_threads_and_a_rerun_says_it_replaced(tmp_path):
    """QA: a row recorded without --threads (2 by default there) did not rerun to its digits elsewhere, --seeds was
    dropped at its default, and a rerun with other settings replaced the report silently."""
    args = ["compare", "hjb", *[a for a in TINY if a not in ("--threads", "1")], "--out", str(tmp_path)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    from bsde.runtime import available_cores

    command = json.loads((tmp_path / "hjb.json").read_text())["environment"]["command"]
    assert "--seeds 3" in command and f"--threads {available_cores()}" in command, command
    again = runner.invoke(app, [*args, "--seeds", "1"])
    assert again.exit_code == 0 and f"note: replaced the earlier report {tmp_path / 'hjb.json'}" in again.stderr


def test_the_markdown_gives_each_seed_its_error_basis_and_warnings_where_they_differ():
    from bsde.report import _error_bases

    same = [{"seed": 0, "error_basis": "b"}, {"seed": 1, "error_basis": "b"}]
    assert _error_bases(same) == ["The estimated error is b."]
    differ = [{"seed": 0, "error_basis": "bound 2.1681", "warnings": ["w0"]}, {"seed": 1, "error_basis": "bound 2.17"}]
    lines = _error_bases(differ)
    assert "- seed 0: bound 2.1681" in lines and "- seed 1: bound 2.17" in lines and "- seed 0: w0" in lines


def test_markdown_png_and_index(results):
    folder, result = results
    report = (folder / "hjb.md").read_text()
    assert "| problem | dim | seeds | y0 mean ± std |" in report and "| hjb | 2 | 2 |" in report
    assert "bsde compare hjb --seeds 2" in report and "torch" in report and "CPU" in report
    assert (folder / "hjb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = (folder / "README.md").read_text()
    assert "[hjb](hjb.md)" in index and "bsde compare hjb --seeds 2" in index
    assert "bsde compare hjb allen_cahn max_call default_risk" not in index  # the project's own command: not a user's
    assert "y0 mean" in result.stdout and "semi-analytic" in result.stdout  # the console table


def test_fail_above_exits_1_after_writing_and_index_lists_both(results):
    folder, _ = results
    result = runner.invoke(app, ["compare", "allen_cahn", "--seeds", "1", *TINY, "--out", str(folder),
                                 "--fail-above", "1e-12", "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["failed"] == ["allen_cahn"] and data["problems"][0]["rel_error"] > 1e-12
    assert data["problems"][0]["y0_std"] is None  # one seed: no spread measured (not a spread of 0)
    assert "check failed: allen_cahn" in result.stderr
    assert (folder / "allen_cahn.json").exists() and (folder / "allen_cahn.png").exists()
    index = (folder / "README.md").read_text()
    assert "[allen_cahn](allen_cahn.md)" in index and "[hjb](hjb.md)" in index


def test_set_wins_over_preset(tmp_path):
    result = runner.invoke(app, ["compare", "hjb", "--preset", "fast", "--seeds", "1", *TINY, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "hjb.json").read_text())["runs"][0]
    assert run["iterations"] == 30 and run["dtype"] == "float32"  # --set over the preset over the file
    assert run["history"][-1][0] == 30


@pytest.mark.parametrize(("args", "message"), [
    ([], "no problem given"),
    (["hjb", "--preset", "nope"], "preset 'nope' not defined"),
    (["nope"], "unknown problem 'nope'"),
])
def test_bad_input_exits_2_before_any_work(args, message, tmp_path):
    result = runner.invoke(app, ["compare", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and message in result.stderr and list(tmp_path.iterdir()) == []


def test_out_into_a_file_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["compare", "hjb", *TINY, "--out", str(blocker / "results")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and str(blocker) in result.stderr


def radial(value: float, difference: float) -> ReferenceResult:
    details = {"points": 4000, "steps": 1000, "coarse_points": 2000, "coarse_steps": 500,
               "half_resolution_difference": difference, "error_estimate": abs(difference)}
    return ReferenceResult(value, None, None, "radial", None, 1.0, details)


def test_agreement_sentence_says_by_how_much_and_whom_we_trust():
    text = agreement(radial(0.0527812677, 2.7e-7), Published(0.052802, "PNAS"))
    assert "disagree by 2.07e-05" in text and "we trust ours" in text and "half resolution" in text
    assert "agree:" in agreement(radial(4.59012, 2e-6), Published(4.5901, "PNAS"))
    mlp = ReferenceResult(50.0, 0.1, (49.8, 50.2), "mlp", None, 1.0, {"level": 4, "repeats": 5})
    assert "we trust the published value" in agreement(mlp, Published(57.3))
    assert agreement(None, Published(1.0)) is None and agreement(mlp, Published(None)) is None


def test_rounding_is_half_a_unit_in_the_last_digit():
    assert rounding(4.5901) == pytest.approx(5e-5) and rounding(57.3) == pytest.approx(0.05)
    assert rounding(100.0) == pytest.approx(0.5) and rounding(1.5e-7) == pytest.approx(5e-9)


def test_report_names_are_unique_per_run_and_never_the_index():
    from bsde.report import report_names

    assert report_names(["hjb", "allen_cahn"]) == ["hjb", "allen_cahn"]
    assert report_names(["p", "p", "p-2", "README", "P"]) == ["p", "p-3", "p-2", "README-2", "P-4"]


def test_problems_of_one_name_get_one_report_each(tmp_path):
    """a/p.yaml and b/p.yaml (both named p) and README.yaml: three reports, three index rows, the index kept."""
    from bsde.problem import shipped_problems
    from bsde.report import MARKER

    text = shipped_problems()["hjb"].read_text()
    files = [tmp_path / "a" / "p.yaml", tmp_path / "b" / "p.yaml", tmp_path / "README.yaml"]
    for path in files:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    folder = tmp_path / "out"
    result = runner.invoke(app, ["compare", *map(str, files), "--seeds", "1", *TINY, "--out", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert f"note: {files[1]}: its report is p-2" in result.stderr
    assert [s["report"] for s in json.loads(result.stdout)["problems"]] == ["p", "p-2", "README-2"]
    for name, path in zip(["p", "p-2", "README-2"], files):
        data = json.loads((folder / f"{name}.json").read_text())
        assert data["problem"] == path.stem and data["report"] == name
        assert data["source"] == os.path.relpath(path, folder)  # from the report's folder: a rerun finds it by it
        assert f"![y0 and loss by iteration]({name}.png)" in (folder / f"{name}.md").read_text()
        assert (folder / f"{name}.png").exists()
    index = (folder / "README.md").read_text()
    assert index.startswith(MARKER + "\n")
    rows = [line for line in index.splitlines() if line.startswith("| [")]
    assert [row.split("|")[1].strip() for row in rows] == ["[README-2](README-2.md)", "[p](p.md)", "[p-2](p-2.md)"]
    # b/p.yaml again, alone: its own report p-2 is updated, a/p.yaml's p is left as it was
    first = (folder / "p.json").read_text()
    spelled = tmp_path / "a" / ".." / "b" / "p.yaml"  # the same file, spelled otherwise
    again = runner.invoke(app, ["compare", str(spelled), "--seeds", "1", *TINY, "--out", str(folder), "--json",
                                "--set", "solver.iterations=20"])
    assert again.exit_code == 0, again.output
    assert f"its report is p-2, since 'p' is the name of another problem's report in {folder}" in again.stderr
    assert (folder / "p.json").read_text() == first
    assert json.loads((folder / "p-2.json").read_text())["runs"][0]["iterations"] == 20


def test_a_report_of_another_problem_in_the_folder_keeps_its_name(tmp_path):
    from bsde.report import report_names

    (tmp_path / "p.json").write_text(json.dumps({"format": "bsde-compare/1", "problem": "p", "source": "d1/p.yaml"}))
    (tmp_path / "q.json").write_text(json.dumps({"format": "bsde-compare/1", "problem": "q"}))  # before sources
    assert report_names(["p", "q"], ["d2/p.yaml", "q"], tmp_path) == ["p-2", "q"]
    assert report_names(["p"], ["d1/p.yaml"], tmp_path) == ["p"]


@pytest.mark.parametrize(("name", "content"), [
    ("README.md", "my own notes\n"),
    ("hjb.json", '{"mine": true}\n'),
    ("hjb.md", "my own hjb notes\n"),  # no hjb.json beside it: not a report bsde wrote
    ("hjb.png", "not bsde's"),
])
def test_files_bsde_did_not_write_are_never_replaced(tmp_path, name, content):
    mine = tmp_path / name
    mine.write_text(content)
    result = runner.invoke(app, ["compare", "hjb", "--seeds", "1", *TINY, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and str(mine) in result.stderr and "Traceback" not in result.output
    assert mine.read_text() == content and [p.name for p in tmp_path.iterdir()] == [name]  # before any work


def test_the_index_is_rewritten_only_where_bsde_wrote_it(tmp_path):
    """Marked indexes and the unmarked ones bsde wrote before (the committed results/ folder) are bsde's."""
    from pathlib import Path

    from bsde.io import OutputError
    from bsde.problem import shipped_problems
    from bsde.report import MARKER, check_folder, index_markdown, write_index

    results = Path(__file__).resolve().parents[1] / "results"
    check_folder(results, sorted(shipped_problems()))  # `bsde compare --all --out results` still works there
    legacy = tmp_path / "README.md"
    legacy.write_text((results / "README.md").read_text())
    assert write_index(tmp_path).read_text() == index_markdown([])
    assert legacy.read_text().startswith(MARKER)
    legacy.write_text("# Deep BSDE against reference values\n\nmine\n")
    with pytest.raises(OutputError, match="README.md: not an index written by bsde compare"):
        write_index(tmp_path)
    assert legacy.read_text() == "# Deep BSDE against reference values\n\nmine\n"


def test_a_reference_of_zero_has_no_relative_error_and_says_so(tmp_path):
    """reaction_diffusion with kappa = -1 at x0 = 0: u(0, 0) = 1 + kappa + sin(0) ... = 0 exactly."""
    zero = ["reaction_diffusion", *tiny_args(**{"equation.kappa": -1, "equation.x0": 0})]
    solved = runner.invoke(app, ["solve", *zero, "--threads", "1"])
    assert solved.exit_code == 0, solved.output
    assert "(the reference is 0: no relative error)" in solved.stdout and "rel. error" not in solved.stdout
    compared = runner.invoke(app, ["compare", *zero, "--seeds", "1", "--out", str(tmp_path / "c"), "--threads", "1",
                                   "--fail-above", "0.01"])
    assert compared.exit_code == 1 and "the reference is 0, so no relative error to hold" in compared.stderr
    row = next(line for line in compared.stdout.splitlines() if "reaction_diffusion" in line)
    assert "±" not in row.split("reaction_diffusion")[1].split("│")[3]  # one seed: no spread shown

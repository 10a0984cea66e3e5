"""The reference method "exact": the closed form at (0, x0), chosen first wherever it applies."""

import json
import math
import subprocess
import sys

import pytest

import bsde
from bsde.errors import ProblemError
from bsde.reference import applicable_methods, cheap_method, reference

EXACT_PROBLEMS = ["black_scholes_barenblatt", "burgers_type", "reaction_diffusion", "quadratic_gradient"]


@pytest.mark.parametrize("name, value", [
    ("black_scholes_barenblatt", 62.5 * math.exp(0.21)),  # |x0|^2 = 50 * 1 + 50 * 0.25
    ("burgers_type", 1 / (1 + math.exp(-1.0))),
    ("reaction_diffusion", 1.6 + math.sin(1.0) * math.exp(-0.5)),  # lam sum x0 = 100 * 0.1 / 10 = 1
    ("quadratic_gradient", math.sin(1.25 ** 0.4)),  # T + |x0|^2 / d = 1 + 0.25
])
def test_exact_reference_of_the_shipped_problems(name, value):
    problem = bsde.load_problem(name)
    assert applicable_methods(problem)[0] == "exact" and cheap_method(problem) == "exact"
    result = reference(problem)
    assert result.method == "exact" and result.value == pytest.approx(value, rel=1e-13)
    assert result.stderr is None and result.error_bar == 0.0


def test_exact_follows_overrides():
    problem = bsde.load_problem("black_scholes_barenblatt", {"equation.dim": 3, "equation.x0": [1.0, 2.0, 3.0],
                                                             "equation.total_time": 2.0})
    assert reference(problem, "exact").value == pytest.approx(14 * math.exp(0.21 * 2), rel=1e-13)


def test_exact_is_refused_where_no_closed_form_is_known():
    with pytest.raises(ProblemError, match="method 'exact' does not apply"):
        reference(bsde.load_problem("hjb"), "exact")
    with pytest.raises(ProblemError, match="no reference method applies to 'differing_rates' .*mlp: the driver uses z.*published value 21.299"):
        reference(bsde.load_problem("differing_rates"))


def test_cli_reference_exact_json(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bsde.cli", "reference", "burgers_type", "--method", "exact",
                           "--json", "-q"], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["method"] == "exact" and data["value"] == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-13)


def test_list_marks_closed_forms_and_the_published_value():
    from typer.testing import CliRunner

    from bsde.cli.app import app

    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for name in EXACT_PROBLEMS:
        assert " exact " in rows[name] and "closed-form solution" in rows[name]
    assert "21.299" in rows["differing_rates"]

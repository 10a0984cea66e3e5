"""Equation kinds from installed packages: a tiny distribution (dist-info + module) on sys.path, seen by
``bsde list``, ``show``, ``solve`` and ``reference`` without editing the registry."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bsde
from bsde.cli.app import app
from bsde.equations import EQUATIONS

runner = CliRunner()

MODULE = '''
from typing import Literal

from pydantic import Field

from bsde.equations.base import Equation
from bsde.processes import BrownianMotion


class HeatCall(Equation):
    """u_t + (sigma^2/2) Lap u - r u = 0, g = max(sum x - K, 0) (Bachelier in sum x)."""

    kind: Literal["heat_call"] = "heat_call"
    dim: int = 4
    strike: float = Field(0.5)
    rate: float = 0.03

    @property
    def process(self):
        return BrownianMotion(0.5)

    def driver(self, t, x, y, z):
        return -self.rate * y

    @property
    def driver_is_linear(self):
        return True

    @property
    def discount_rate(self):
        return self.rate

    @property
    def driver_uses_z(self):
        return False

    def terminal(self, x):
        return (x.sum(-1) - self.strike).clamp(min=0.0)


NotAnEquation = 3
'''


def install(folder: Path, entry_points: str) -> None:
    """A distribution 'fake-bsde-plugin' in ``folder``: its module and metadata with the given entry points."""
    (folder / "fake_bsde_plugin.py").write_text(MODULE)
    info = folder / "fake_bsde_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-bsde-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    install(tmp_path, """\
        [bsde.equations]
        heat_call = fake_bsde_plugin:HeatCall
        broken = fake_bsde_plugin_missing:Thing
        not_equation = fake_bsde_plugin:NotAnEquation
        hjb = fake_bsde_plugin:HeatCall
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    EQUATIONS.refresh()
    yield tmp_path
    sys.modules.pop("fake_bsde_plugin", None)
    monkeypatch.undo()
    EQUATIONS.refresh()


def bachelier(mean: float, sd: float, strike: float, discount: float) -> float:
    d = (mean - strike) / sd
    pdf, cdf = math.exp(-0.5 * d * d) / math.sqrt(2 * math.pi), 0.5 * math.erfc(-d / math.sqrt(2))
    return discount * ((mean - strike) * cdf + sd * pdf)


def test_the_registry_sees_plugin_kinds_by_name_and_loads_them_on_use(plugin):
    assert "heat_call" in EQUATIONS and "heat_call" in list(EQUATIONS)
    assert "fake_bsde_plugin" not in sys.modules  # named from metadata, not imported
    assert EQUATIONS["hjb"].__name__ == "HJB"  # a built-in kind wins over a plugin of the same name
    cls = EQUATIONS["heat_call"]
    assert cls.__name__ == "HeatCall" and "fake_bsde_plugin" in sys.modules


def test_list_show_solve_and_reference_through_the_cli(plugin):
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "heat_call" in listed.stdout and "fake-bsde-plugin" in listed.stdout
    shown = runner.invoke(app, ["show", "heat_call", "--set", "equation.strike=1.0"])
    assert shown.exit_code == 0, shown.output
    assert "kind: heat_call" in shown.stdout and "strike: 1.0" in shown.stdout
    ref = runner.invoke(app, ["reference", "heat_call", "--json", "--quiet", "--paths", "100000"])
    assert ref.exit_code == 0, ref.output
    data = json.loads(ref.stdout)
    truth = bachelier(0.0, 0.5 * 2.0, 0.5, math.exp(-0.03))  # sum of 4 coordinates: sd 0.5 sqrt(4)
    assert data["method"] == "mc" and data["ci95"][0] <= truth <= data["ci95"][1]
    solved = runner.invoke(app, ["solve", "heat_call", "--json", "--set", "solver.iterations=30",
                                 "--set", "solver.time_steps=4", "--set", "solver.batch_size=16",
                                 "--set", "solver.valid_size=16", "--device", "cpu", "--no-reference"])
    assert solved.exit_code == 0, solved.output
    assert json.loads(solved.stdout)["kind"] == "heat_call"


def test_a_yaml_file_can_name_a_plugin_kind(plugin, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("equation:\n  kind: heat_call\n  dim: 2\n  strike: 0.0\n")
    problem = bsde.load_problem(str(path))
    assert type(problem.equation).__name__ == "HeatCall" and problem.equation.dim == 2


@pytest.mark.parametrize("kind, fragment", [
    ("broken", "cannot load entry point 'broken = fake_bsde_plugin_missing:Thing' from fake-bsde-plugin"),
    ("not_equation", "is 3, not a bsde.Equation subclass"),
])
def test_a_broken_plugin_is_one_line_naming_the_entry_point(plugin, tmp_path, kind, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(f"equation:\n  kind: {kind}\n")
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert fragment in result.output
    assert runner.invoke(app, ["list"]).exit_code == 0  # listing never imports plugins


def test_unknown_names_suggest_plugin_kinds(plugin):
    result = runner.invoke(app, ["show", "heat_cal"])
    assert result.exit_code == 2 and "did you mean 'heat_call'" in result.output and "installed kinds" in result.output


def test_without_plugins_the_registry_is_the_built_in_kinds():
    assert {"hjb", "allen_cahn", "max_call", "default_risk"} <= set(EQUATIONS)
    assert "heat_call" not in EQUATIONS

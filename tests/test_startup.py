"""Start-up: commands that only read problems never import torch (nor numpy, scipy, matplotlib).

Each case runs in a fresh interpreter, since this one has long imported everything. Asserting on
``sys.modules`` rather than on seconds keeps the test robust on a busy machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest

HEAVY = ("torch", "numpy", "scipy", "matplotlib")


def fresh(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter outside the checkout (so it imports the installed bsde)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          timeout=120)


def heavy_modules_after(args: list[str],
                        modules: tuple[str, ...] = HEAVY) -> tuple[list[str], subprocess.CompletedProcess]:
    """Which of ``modules`` (the heavy ones by default) running ``bsde ARGS`` loads, in a fresh interpreter."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['bsde', *{args!r}]\n"
        "from bsde.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {modules!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    done = fresh(code)
    return json.loads(done.stderr.strip().splitlines()[-1]), done


@pytest.mark.parametrize("args", [
    ["--help"], ["--version"], ["list"], ["show", "hjb"], ["show", "max_call", "--set", "equation.dim=3"],
    ["show", "basket_put", "--set", "equation.terminal=max(x)"],
    ["show", "hjx"], ["solve", "--help"], ["reference", "--help"], ["compare", "--help"], ["bench", "--help"],
    ["eval", "--help"], ["show", "hjb", "--set", "solver.region={low: -1, high: 1}"],
])
def test_reading_commands_do_not_import_torch(args):
    heavy, done = heavy_modules_after(args)
    assert heavy == [], f"bsde {' '.join(args)} imported {heavy}\n{done.stderr}"


@pytest.mark.parametrize("args", [["--help"], ["solve", "--help"], ["reference", "--help"], ["compare", "--help"]])
def test_help_does_not_load_the_problem_modules(args):
    """--help needs typer and rich only: the problem modules and the equations (with pydantic, about 0.3 s of a
    0.6-0.8 s --help; typer itself loads pydantic for a command's options) load inside the commands that read one."""
    loaded, done = heavy_modules_after(args, ("bsde.problem", "bsde.equations", "bsde.reference", "bsde.settings"))
    assert loaded == [], done.stderr


@pytest.mark.parametrize("given, expected", [({}, "3000"), ({"GOMP_SPINCOUNT": "50"}, "50"),
                                             ({"OMP_WAIT_POLICY": "ACTIVE"}, None)])
def test_the_command_shortens_openmps_spinning_unless_told(given, expected):
    """Before torch loads, ``bsde`` sets GOMP_SPINCOUNT (GNU OpenMP's threads spun 300,000 rounds: beside other busy
    processes an iteration took 2.1 s instead of 78 ms), unless the user set it or OMP_WAIT_POLICY."""
    code = (
        "import os, sys\n"
        "for name in ('GOMP_SPINCOUNT', 'OMP_WAIT_POLICY'):\n    os.environ.pop(name, None)\n"
        f"os.environ.update({given!r})\n"
        "sys.argv = ['bsde', '--version']\n"
        "from bsde.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(repr(os.environ.get('GOMP_SPINCOUNT')), 'torch' in sys.modules, file=sys.stderr)\n"
    )
    done = fresh(code)
    assert done.stderr.strip().splitlines()[-1] == f"{expected!r} False", done.stderr


def test_the_cli_names_the_reference_methods_of_the_engine():
    """cli.reference names the methods itself (so that --help need not load the engine): the same, in order."""
    from bsde.cli.reference import METHOD_NAMES
    from bsde.reference import METHODS

    assert METHOD_NAMES == tuple(METHODS)


def test_import_bsde_is_light_and_its_names_still_work():
    code = (
        "import sys, bsde\n"
        "assert 'torch' not in sys.modules\n"
        "problem = bsde.load_problem('hjb', {'equation.dim': 3})\n"
        "assert 'torch' not in sys.modules and isinstance(problem, bsde.Problem)\n"
        "assert {'allen_cahn', 'default_risk', 'hjb', 'max_call', 'custom', 'black_scholes_barenblatt'} <= set(bsde.EQUATIONS)\n"
        # importing the submodules bsde.solve and bsde.reference must not hide the functions of the same name
        "from bsde.solve import driver_free_baseline\n"
        "import bsde.reference.mlp\n"
        "assert bsde.solve.__module__ == 'bsde.solve' and callable(bsde.solve)\n"
        "assert bsde.reference.__module__ == 'bsde.reference.engine' and callable(bsde.reference)\n"
        "assert all(getattr(bsde, name) is not None for name in bsde.__all__)\n"
        "from bsde import solve, reference, SolveResult\n"
        "assert solve is bsde.solve and reference is bsde.reference\n"
        "print(bsde.reference(problem).value)\n"
    )
    done = fresh(code)
    assert done.returncode == 0, done.stderr
    assert 0 < float(done.stdout) < 5


def test_unknown_attribute_is_an_attribute_error():
    import bsde

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        bsde.nothing  # noqa: B018


def test_submodules_are_attributes_on_a_fresh_import():
    """``bsde.processes.BrownianMotion`` (as the README writes it) works right after ``import bsde``, before any
    other name has loaded the submodule (QA: an AttributeError that depended on statement order)."""
    done = fresh("import bsde\nprint(bsde.processes.BrownianMotion.__name__, bsde.probing.__name__, "
                 "bsde.closed_forms.__name__)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["BrownianMotion", "bsde.probing", "bsde.closed_forms"]

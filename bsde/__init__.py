"""bsde: high-dimensional semilinear parabolic PDEs by the deep BSDE method.

>>> import bsde
>>> problem = bsde.load_problem("hjb", {"equation.dim": 20})
>>> result = bsde.solve(problem, seed=0)

``import bsde`` is cheap: each public name is imported on first use (PEP 562), so reading and
checking problems (``bsde list``, ``bsde show``) never loads torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import TYPE_CHECKING, Any

from bsde.errors import ArgumentError, BSDEError, ProblemError, TrainingError

# torch's CPU allocator backs large tensors with transparent huge pages when this is set before its first
# allocation: fewer page faults on every fresh (B, N, d) tensor, about 10% of an iteration at d = 10,000.
# No effect when torch was imported (and allocated) before bsde; set it to 0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"

#: public name -> the module that defines it, imported when the name is first used
_LAZY = {
    "EQUATIONS": "bsde.equations", "Equation": "bsde.equations",
    "BrownianMotion": "bsde.processes", "GBM": "bsde.processes", "Diffusion": "bsde.processes",
    "CustomEquation": "bsde.equations.functions", "custom_equation": "bsde.equations.functions",
    "DriverFlags": "bsde.probing",
    "Problem": "bsde.problem", "as_problem": "bsde.problem", "load_problem": "bsde.problem",
    "problem_from_dict": "bsde.problem", "shipped_problems": "bsde.problem",
    "ReferenceResult": "bsde.reference", "reference": "bsde.reference",
    "SolveResult": "bsde.solve", "solve": "bsde.solve",
    "Solution": "bsde.solution", "reference_greeks": "bsde.reference.greeks",
}

__all__ = [
    "EQUATIONS", "GBM", "ArgumentError", "BSDEError", "BrownianMotion", "CustomEquation", "Diffusion", "DriverFlags",
    "Equation",
    "Problem", "ProblemError", "ReferenceResult", "Solution", "SolveResult",
    "TrainingError", "as_problem", "custom_equation", "load_problem", "problem_from_dict", "reference",
    "reference_greeks", "shipped_problems", "solve", "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:  # a submodule (bsde.processes), as after ``import bsde.processes``, whatever loaded before
        if name.startswith("_") or importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'bsde' has no attribute '{name}'")
        return importlib.import_module(f"{__name__}.{name}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """The ``bsde`` module: ``bsde.solve`` and ``bsde.reference`` stay the functions.

    Importing a submodule sets it as an attribute of its package, and the submodules
    ``bsde.solve`` and ``bsde.reference`` share their names with the functions they define;
    when one is first imported after ``import bsde`` (``from bsde.solve import ...``), that
    attribute must not hide the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


class _CheckoutFinder:
    """``bsde.cli`` and ``bsde.problems`` from a source checkout's ``cli/`` and ``problems/``.

    An install maps those top-level folders into the package (pyproject's package-dir); Python run from the
    checkout's root imports this folder instead of the install, and without this finder would find neither.
    """

    def __init__(self, folders: dict[str, str]):
        self.folders = folders

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(fullname, os.path.join(folder, "__init__.py"),
                                                      submodule_search_locations=[folder])


def _checkout_folders() -> dict[str, str]:
    """{'bsde.cli': <root>/cli, ...} where this package runs from a source checkout (else empty)."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    if not os.path.isfile(os.path.join(root, "pyproject.toml")):
        return {}
    return {f"bsde.{name}": os.path.join(root, name) for name in ("cli", "problems")
            if not os.path.isdir(os.path.join(here, name)) and os.path.isfile(os.path.join(root, name, "__init__.py"))}


if _folders := _checkout_folders():
    sys.meta_path.append(_CheckoutFinder(_folders))

if TYPE_CHECKING:
    from bsde.equations import EQUATIONS, Equation
    from bsde.equations.functions import CustomEquation, custom_equation
    from bsde.probing import DriverFlags
    from bsde.processes import GBM, BrownianMotion, Diffusion
    from bsde.problem import Problem, as_problem, load_problem, problem_from_dict, shipped_problems
    from bsde.reference import ReferenceResult, reference
    from bsde.reference.greeks import reference_greeks
    from bsde.solution import Solution
    from bsde.solve import SolveResult, solve

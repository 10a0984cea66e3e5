"""bsde: high-dimensional semilinear parabolic PDEs by the deep BSDE method.

>>> import bsde
>>> problem = bsde.load_problem("hjb", {"equation.dim": 20})
>>> result = bsde.solve(problem, seed=0)
"""

from bsde.equations import EQUATIONS, Equation
from bsde.errors import BSDEError, ProblemError, TrainingError
from bsde.problem import Problem, load_problem, problem_from_dict, shipped_problems
from bsde.reference import ReferenceResult, reference
from bsde.solve import SolveResult, solve

__version__ = "0.1.0"

__all__ = [
    "EQUATIONS", "BSDEError", "Equation", "Problem", "ProblemError", "ReferenceResult", "SolveResult",
    "TrainingError", "load_problem", "problem_from_dict", "reference", "shipped_problems", "solve", "__version__",
]

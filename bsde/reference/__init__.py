"""Reference values: independent checks of the solver.

>>> import bsde
>>> from bsde.reference import reference
>>> reference(bsde.load_problem("hjb")).value  # radial finite differences, about 4.59016
"""

from bsde.reference.engine import (METHODS, applicable_methods, cheap_method, check_declared_closed_form, describe,
                                   reference, resolve_method, why_no_cheap_method)
from bsde.reference.result import ReferenceResult

__all__ = ["METHODS", "ReferenceResult", "applicable_methods", "cheap_method", "check_declared_closed_form", "describe",
           "reference", "resolve_method", "why_no_cheap_method"]

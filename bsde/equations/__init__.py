"""Equations: one small class per PDE, registered by ``kind``."""

from bsde.equations.allen_cahn import AllenCahn
from bsde.equations.base import Equation, GeometricBrownian, RadialForm, ScaledBrownian
from bsde.equations.hjb import HJB
from bsde.equations.pricing import BlackScholes, DefaultRisk, MaxCall
from bsde.equations.registry import EQUATIONS

__all__ = [
    "EQUATIONS", "AllenCahn", "BlackScholes", "DefaultRisk", "Equation", "GeometricBrownian",
    "HJB", "MaxCall", "RadialForm", "ScaledBrownian",
]

"""Equations: one small class per PDE, registered by ``kind``."""

from bsde.equations.allen_cahn import AllenCahn
from bsde.equations.base import Equation, RadialForm
from bsde.equations.functions import CustomEquation, custom_equation
from bsde.equations.hjb import HJB
from bsde.equations.pricing import BlackScholes, DefaultRisk, MaxCall
from bsde.equations.registry import EQUATIONS
from bsde.processes import GBM, BrownianMotion, Diffusion, GeometricBrownian, ScaledBrownian

__all__ = [
    "EQUATIONS", "GBM", "AllenCahn", "BlackScholes", "BrownianMotion", "CustomEquation", "DefaultRisk", "Diffusion",
    "Equation", "GeometricBrownian", "HJB", "MaxCall", "RadialForm", "ScaledBrownian", "custom_equation",
]

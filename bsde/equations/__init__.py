"""Equations: one small class per PDE, registered by ``kind``."""

from bsde.equations.allen_cahn import AllenCahn
from bsde.equations.barenblatt import BlackScholesBarenblatt
from bsde.equations.base import Equation, RadialForm
from bsde.equations.burgers import BurgersType
from bsde.equations.differing_rates import DifferingRates
from bsde.equations.functions import CustomEquation, custom_equation
from bsde.equations.hjb import HJB
from bsde.equations.pricing import BlackScholes, DefaultRisk, MaxCall
from bsde.equations.quadratic_gradient import QuadraticGradient
from bsde.equations.reaction_diffusion import ReactionDiffusion
from bsde.equations.registry import EQUATIONS
from bsde.processes import GBM, BrownianMotion, Diffusion, GeometricBrownian, ScaledBrownian

__all__ = [
    "EQUATIONS", "GBM", "AllenCahn", "BlackScholes", "BlackScholesBarenblatt", "BrownianMotion", "BurgersType",
    "CustomEquation", "DefaultRisk", "DifferingRates", "Diffusion", "Equation", "GeometricBrownian", "HJB",
    "MaxCall", "QuadraticGradient", "RadialForm", "ReactionDiffusion", "ScaledBrownian", "custom_equation",
]

"""Equations: one small class per PDE, registered by ``kind``."""

from bsde.equations.allen_cahn import AllenCahn
from bsde.equations.barenblatt import BlackScholesBarenblatt
from bsde.equations.base import Equation, GeometricBrownian, RadialForm, ScaledBrownian
from bsde.equations.burgers import BurgersType
from bsde.equations.differing_rates import DifferingRates
from bsde.equations.hjb import HJB
from bsde.equations.pricing import BlackScholes, DefaultRisk, MaxCall
from bsde.equations.quadratic_gradient import QuadraticGradient
from bsde.equations.reaction_diffusion import ReactionDiffusion
from bsde.equations.registry import EQUATIONS

__all__ = [
    "EQUATIONS", "AllenCahn", "BlackScholes", "BlackScholesBarenblatt", "BurgersType", "DefaultRisk",
    "DifferingRates", "Equation", "GeometricBrownian", "HJB", "MaxCall", "QuadraticGradient", "RadialForm",
    "ReactionDiffusion", "ScaledBrownian",
]

"""kind -> equation class: the built-in kinds below, then those of installed packages (``bsde.equations.plugins``)."""

from __future__ import annotations

from bsde.equations.allen_cahn import AllenCahn
from bsde.equations.barenblatt import BlackScholesBarenblatt
from bsde.equations.base import Equation
from bsde.equations.burgers import BurgersType
from bsde.equations.custom import Custom
from bsde.equations.differing_rates import DifferingRates
from bsde.equations.hjb import HJB
from bsde.equations.plugins import Registry
from bsde.equations.pricing import DefaultRisk, MaxCall
from bsde.equations.quadratic_gradient import QuadraticGradient
from bsde.equations.reaction_diffusion import ReactionDiffusion

EQUATIONS: dict[str, type[Equation]] = {
    "hjb": HJB,
    "allen_cahn": AllenCahn,
    "max_call": MaxCall,
    "default_risk": DefaultRisk,
    "custom": Custom,
    # problems with exact solutions (reference method "exact") and the differing-rates pricing problem
    "black_scholes_barenblatt": BlackScholesBarenblatt,
    "burgers_type": BurgersType,
    "reaction_diffusion": ReactionDiffusion,
    "quadratic_gradient": QuadraticGradient,
    "differing_rates": DifferingRates,
}

EQUATIONS: Registry = Registry(EQUATIONS)  # type: ignore[no-redef]  # plus the entry points' kinds

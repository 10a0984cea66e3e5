"""kind -> equation class."""

from __future__ import annotations

from bsde.equations.allen_cahn import AllenCahn
from bsde.equations.base import Equation
from bsde.equations.custom import Custom
from bsde.equations.hjb import HJB
from bsde.equations.pricing import DefaultRisk, MaxCall

EQUATIONS: dict[str, type[Equation]] = {
    "hjb": HJB,
    "allen_cahn": AllenCahn,
    "max_call": MaxCall,
    "default_risk": DefaultRisk,
    "custom": Custom,
}

"""kind -> equation class: the built-in kinds below, then those of installed packages (``bsde.equations.plugins``)."""

from __future__ import annotations

from bsde.equations.allen_cahn import AllenCahn
from bsde.equations.base import Equation
from bsde.equations.hjb import HJB
from bsde.equations.plugins import Registry
from bsde.equations.pricing import DefaultRisk, MaxCall

EQUATIONS: dict[str, type[Equation]] = {
    "hjb": HJB,
    "allen_cahn": AllenCahn,
    "max_call": MaxCall,
    "default_risk": DefaultRisk,
}

EQUATIONS: Registry = Registry(EQUATIONS)  # type: ignore[no-redef]  # plus the entry points' kinds

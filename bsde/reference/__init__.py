"""Reference values: independent checks of the solver."""

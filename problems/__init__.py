"""Shipped problem files (installed as ``bsde.problems``)."""

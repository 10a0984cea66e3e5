"""The `bsde` command-line interface (installed as ``bsde.cli``)."""

"""The `bsde` command-line interface (installed as ``bsde.cli``).

:func:`main` is the ``bsde`` command. It installs the Ctrl-C handler of :mod:`.signals` before anything heavy is
imported, so that a Ctrl-C during start-up ends the command in one line instead of leaving a module half-imported.
"""


def main() -> None:
    """The ``bsde`` command (also ``python -m bsde.cli`` and ``torchrun ... -m bsde.cli``)."""
    from .signals import ignore_late_signals, interrupt_outside_imports

    interrupt_outside_imports()
    from .app import main as run

    try:
        run()
    finally:  # the outcome is written (and the exit code set): a signal during shut-down changes nothing
        ignore_late_signals()

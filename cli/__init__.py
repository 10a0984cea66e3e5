"""The `bsde` command-line interface (installed as ``bsde.cli``).

:func:`main` is the ``bsde`` command. It installs the Ctrl-C handler of :mod:`.signals` before anything heavy is
imported, so that a Ctrl-C during start-up ends the command in one line instead of leaving a module half-imported.
"""

import os

#: how long torch's OpenMP threads spin before they sleep, at the end of a parallel region, unless the environment says
#: (GOMP_SPINCOUNT or OMP_WAIT_POLICY). torch's CPU build uses GNU OpenMP, whose threads spin 300,000 rounds by default:
#: where other processes take the cores, each region then waits for a thread that is not running. hjb d = 100 on 2
#: threads of a 2-core AMD EPYC: beside a test run 2.1 s per iteration by default (40 ms on 1 thread); beside 2 busy
#: processes 78 ms at 3000 (94 ms at 1000, 346 ms at 10,000, 77 ms passive); on the quiet machine 3000 was as fast as
#: the default (18-21 ms against 17-27 ms, noisy), 1000 about 30% slower and passive 2.7x slower (2026-11-29). Read
#: when torch loads: set before any import of it.
SPIN_COUNT = "3000"


def main() -> None:
    """The ``bsde`` command (also ``python -m bsde.cli`` and ``torchrun ... -m bsde.cli``)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    from .signals import ignore_late_signals, interrupt_outside_imports

    interrupt_outside_imports()
    from .app import main as run

    try:
        run()
    finally:  # the outcome is written (and the exit code set): a signal during shut-down changes nothing
        ignore_late_signals()

"""The bond between ``bsde ... --nproc K`` (:func:`bsde.distributed.launch`) and the workers it starts.

Torch's launcher starts each worker in a session of its own, out of reach of a signal to the launcher's
process group, and a launcher killed by SIGKILL cannot pass the signal on: its workers would train on,
orphaned, writing the run's checkpoint. The launcher gives them its process id; each worker asks the kernel
for SIGTERM (bsde's interrupt: a checkpoint, then exit 143) when its parent dies. Torch-free: every command
calls :func:`die_with_launcher` first.
"""

from __future__ import annotations

import os
import sys

#: the environment variable in which the launcher gives its workers its process id
LAUNCHER_PID = "BSDE_LAUNCHER_PID"
#: prctl's option for the signal a process gets when its parent dies (linux/prctl.h)
PR_SET_PDEATHSIG = 1


def die_with_launcher() -> None:
    """In a worker that ``--nproc`` started, SIGTERM when the launcher dies (Linux; elsewhere nothing)."""
    launcher = os.environ.pop(LAUNCHER_PID, None)  # not for this worker's own children
    if not launcher or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != int(launcher):  # it died before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)

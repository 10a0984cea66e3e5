"""Graceful stops: SIGINT/SIGTERM set a flag that the trainer polls after each iteration."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Callable flag: true once a stop signal arrived; ``signum`` says which."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop without waiting for the iteration
        if self.signum is None:  # the first signal names the stop (torchrun may follow up with SIGTERM)
            self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell convention 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Install the flag-setting handlers for the duration of the block, then restore the old ones."""
    request = StopRequest()
    previous = {sig: signal.signal(sig, request.handle) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

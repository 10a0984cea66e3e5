"""Graceful stops: SIGINT/SIGTERM set a flag that the trainer polls after each iteration.

A signal that no iteration will see any more (one after training, or a second Ctrl-C) raises
:class:`Stopped` instead, which the command turns into one line and exit 130 / 143.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an import (a frame of importlib's bootstrap on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def exit_in_one_line(signum: int, when: str = "") -> None:
    """End the process now: ``error: interrupted by SIGNAL[ when]`` on stderr, exit 128 + signum (no clean-up to
    run, and nothing Python-level that an import could swallow); a follower of a data-parallel run (RANK > 0) marks
    the line with its rank, as ``fail`` does (QA: two unmarked lines from a Ctrl-C during the workers' start-up)."""
    rank = os.environ.get("RANK", "0")
    who = "error" if rank in ("", "0") else f"error (process {rank})"
    os.write(2, f"{who}: interrupted by {signal.Signals(signum).name}{' ' + when if when else ''}\n".encode())
    os._exit(128 + signum)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: KeyboardInterrupt, as Python's own handler, but inside an import an immediate exit 130 with one line.
    A KeyboardInterrupt there leaves the module half-imported, and importlib may swallow it: a QA pass saw a
    Ctrl-C in a solve's first second ignored (the run went on to exit 0), numpy broken later (AttributeError after
    training), and aborts from C++ (pybind11). Nothing is written during an import, so nothing is lost."""
    if importing(frame):
        exit_in_one_line(signum)
    signal.default_int_handler(signum, frame)


def interrupt_outside_imports() -> None:
    """Install :func:`_interrupt` for SIGINT (the ``bsde`` command's first step; commands may install their own)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where the caller chose another
        signal.signal(signal.SIGINT, _interrupt)


def ignore_late_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on: the command has written its outcome and set its exit code, and the
    interpreter is shutting down (QA: a Ctrl-C there raised KeyboardInterrupt in an atexit callback, a traceback
    and exit 130 after a complete JSON result; a SIGTERM gave exit 143 without a word)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class Stopped(BaseException):
    """A stop signal that ends the command now (a BaseException, like KeyboardInterrupt: nothing swallows it)."""

    def __init__(self, signum: int, after_training: bool):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.after_training = after_training

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class StopRequest:
    """Callable flag: true once a stop signal arrived; ``signum`` says which."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.training = True  # an iteration will still poll the flag
        self.raised = False  # Stopped was raised once: later signals wait for it to end the command

    def __call__(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.raised:
            return
        if not self.training or (self.signum is not None and signum == signal.SIGINT):
            self.raised = True  # after training, or a second Ctrl-C: stop without waiting for an iteration
            if importing(frame):  # raised there it may be swallowed (see _interrupt): end now, in one line
                exit_in_one_line(signum, "after training" if not self.training else "a second time, during training")
            raise Stopped(signum, after_training=not self.training)
        if self.signum is None:  # the first signal names the stop (torchrun may follow up with SIGTERM)
            self.signum = signum

    def training_over(self) -> None:
        """No iteration polls the flag from now on: a signal that came already, or comes later, stops now."""
        self.training = False
        if self.signum is not None and not self.raised:
            self.raised = True
            raise Stopped(self.signum, after_training=True)

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

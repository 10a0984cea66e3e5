"""The project's own error types: each message is one line a user can act on."""


class BSDEError(Exception):
    """Base class of every error the library raises on purpose; its message is always one line."""

    def __init__(self, message: str = ""):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class ProblemError(BSDEError, ValueError):
    """A problem file or override is invalid; the message names the file and the dotted key."""


class TrainingError(BSDEError, RuntimeError):
    """Training failed (for example a non-finite loss)."""


class Interrupted(BSDEError):
    """Training stopped early because a stop was requested (Ctrl-C, SIGTERM); ``iteration`` is the next one."""

    def __init__(self, iteration: int):
        super().__init__(f"training stopped on request before iteration {iteration}")
        self.iteration = iteration


class ArgumentError(BSDEError, ValueError):
    """An argument of a library function is invalid (a seed that is not an integer, say); the message names it."""

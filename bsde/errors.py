"""The project's own error types: each message is one line a user can act on."""


class BSDEError(Exception):
    """Base class of every error the library raises on purpose; its message is always one line."""

    def __init__(self, message: str = ""):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class ProblemError(BSDEError, ValueError):
    """A problem file or override is invalid; the message names the file and the dotted key."""


def file_of(source: str | None) -> str | None:
    """The file a problem came from (its ``source``), None where it was built in Python ('<python>', '<memory>')."""
    return source if source and not source.startswith("<") else None


def in_file(error: ProblemError, source: str | None) -> ProblemError:
    """``error`` about a key of the problem ('equation.terminal: ...') with the problem's file in front, where it
    came from one; otherwise ``error`` itself."""
    file = file_of(source)
    return ProblemError(f"{file}: {error}") if file and str(error).startswith("equation.") else error


class TrainingError(BSDEError, RuntimeError):
    """Training failed (for example a non-finite loss)."""


class Interrupted(BSDEError):
    """Training stopped early because a stop was requested (Ctrl-C, SIGTERM); ``iteration`` is the next one."""

    def __init__(self, iteration: int):
        super().__init__(f"training stopped on request before iteration {iteration}")
        self.iteration = iteration


class ArgumentError(BSDEError, ValueError):
    """An argument of a library function is invalid (a seed that is not an integer, say); the message names it."""

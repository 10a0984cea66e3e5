"""The project's own error types: each message is one line a user can act on."""


class BSDEError(Exception):
    """Base class of every error the library raises on purpose."""


class ProblemError(BSDEError, ValueError):
    """A problem file or override is invalid; the message names the file and the dotted key."""


class TrainingError(BSDEError, RuntimeError):
    """Training failed (for example a non-finite loss)."""

"""One base exception, one subclass per layer. The CLI maps them to one-line errors and exit codes."""


class RatMonitorError(Exception):
    """Base class: a problem the user can act on (bad input, missing model, ...)."""

    exit_code = 1


class SourceError(RatMonitorError):
    """A video file, camera or stream cannot be opened or read."""

    exit_code = 3


class ModelError(RatMonitorError):
    """A model is unknown, corrupt, tampered with or unsafe to load."""

    exit_code = 4


class DatasetError(RatMonitorError):
    """A dataset manifest or folder cannot be read or split."""

    exit_code = 5


class ConfigError(RatMonitorError):
    """An option or setting is invalid (bad schedule, bad size, unwritable output folder)."""

    exit_code = 2


class RunExists(ConfigError):
    """The run folder already holds a run that this command may not replace; it is kept as it is."""


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (ONNX Runtime's span several, with stack frames)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

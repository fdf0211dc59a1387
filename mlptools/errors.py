"""Exception tree. Every error a user can cause is an MlptoolsError; the CLI prints it as one line
and exits with its ``exit_code``. Messages name the file (and frame) first:
``"si.xyz: frame 3: ..."``.
"""


class MlptoolsError(Exception):
    """Base of all expected failures (bad input or a failed computation)."""

    exit_code = 1


class InputError(MlptoolsError):
    """A file or stream that cannot be read, or whose content is invalid."""


class ParameterError(MlptoolsError):
    """An option or hyperparameter value that is out of range or inconsistent."""


class ComputationError(MlptoolsError):
    """A computation that failed on valid input (singular system, diverged run)."""


class CheckFailed(MlptoolsError):
    """A requested check did not pass (validation thresholds, MD extrapolation guard)."""

    exit_code = 3


class Terminated(MlptoolsError):
    """Stopped by SIGTERM after the checkpoint was flushed."""

    exit_code = 143

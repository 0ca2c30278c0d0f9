"""User-facing errors.

Every problem caused by the user's input (a config field, a plan, a checkpoint, a
file) is raised as :class:`GrowsearchError` with one line that names the field, the
value and what is allowed. The CLI prints that line and exits with code 2; only
``--debug`` shows a traceback.
"""

from __future__ import annotations


class GrowsearchError(ValueError):
    """A bad input, explained in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class PlanError(GrowsearchError):
    """An expansion plan that cannot be applied to the given model."""


class CheckpointError(GrowsearchError):
    """A checkpoint that is missing, corrupted, unsafe, or does not match its spec."""


class ConfigError(GrowsearchError):
    """A config or spec field with a wrong key, type or value."""


class SearchFailed(GrowsearchError):  # noqa: N818 - reads as the event it reports
    """A search cannot produce honest results (e.g. its reference training failed, so
    gains would be measured against something else); one line, exit code 2."""


def require(condition: bool, message: str, error: type[GrowsearchError] = ConfigError) -> None:
    """Raise ``error(message)`` unless ``condition`` holds."""
    if not condition:
        raise error(message)


class TrainingError(RuntimeError):
    """Training of one candidate failed (diverged to NaN/Inf, ran out of memory).

    Not a user input error: a search records the candidate as failed and goes on.
    """


class IncompleteSearchError(RuntimeError):
    """A search stopped short for the environment's reasons (a full disk, a lost worker):
    nothing was decided on partial results, and ``--resume`` retries what failed. The CLI
    prints the one-line message and exits with code 1."""

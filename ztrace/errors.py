"""Error hierarchy.

Every error a user can cause is a :class:`ZtraceError`. The CLI prints it as one line,
``ztrace: error: <message>``, and exits with code 2, never with a traceback.
"""

from __future__ import annotations


class ZtraceError(Exception):
    """Base of all ztrace errors; the message is shown to the user as is."""

    exit_code = 2


class TraceFormatError(ZtraceError):
    """A trace or results file is missing, truncated, or does not match the format."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(ZtraceError):
    """An option, design name or parameter is invalid."""


class CaptureError(ZtraceError):
    """Capture could not start or run (permissions, BPF, devices)."""


class FeatureMissingError(CaptureError):
    """The running kernel lacks a symbol, tracepoint or program type that a probe needs."""

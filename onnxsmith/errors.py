"""The one error hierarchy. The CLI prints `str(error)` on one line and exits with `exit_code`."""

from __future__ import annotations

from collections.abc import Iterable


class OnnxsmithError(Exception):
    """Base of every error onnxsmith raises on purpose; the message says what to do."""

    exit_code = 1


class UsageError(OnnxsmithError):
    """A command line or option that cannot be right (exit code 2)."""

    exit_code = 2


class ModelLoadError(OnnxsmithError):
    """A model file that cannot be read as a valid ONNX model."""


class ModelSaveError(OnnxsmithError):
    """A model that cannot be written where it was asked to go."""


class DataError(OnnxsmithError):
    """A data dir or file that does not match the model it feeds."""


class PassError(OnnxsmithError):
    """A transform that cannot be applied to this model; the model is left untouched."""


class NotFasterError(PassError):
    """The transformed model would run slower than its input on this machine; nothing written.

    A verdict about this machine, not a fault: a recipe passes its input on unchanged.
    """


class SessionError(OnnxsmithError):
    """ONNX Runtime refused to load or run a model."""


class ClusterError(OnnxsmithError):
    """A Ray cluster that cannot be reached, lacks the target asked for, or lost a node."""


class ExportError(OnnxsmithError):
    """A PyTorch model that could not be exported or failed its parity check."""


def name_list(names: Iterable[str], limit: int = 5) -> str:
    """Quotes the first `limit` names and counts the rest: `'a', 'b' and 3 more`."""
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    rest = len(names) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown

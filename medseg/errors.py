"""The medseg error hierarchy.

Every error a user can cause (bad input file, bad config, bad checkpoint) is a :class:`MedsegError`
whose message names the offending file (or key) and says what to do. The CLI turns any
``MedsegError`` into one line on stderr and a non-zero exit code; library code only raises.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "MedsegError",
    "InputError",
    "DicomInputError",
    "GeometryError",
    "ConfigError",
    "CheckpointError",
    "ModelError",
    "TrainingError",
    "ExportError",
]


class MedsegError(Exception):
    """Base class of every error medseg raises on purpose.

    Args:
        message: what is wrong, in one sentence.
        path: the file, folder or config key concerned (shown first).
        hint: what the user can do about it (shown after ``Fix:``).
    """

    exit_code: int = 2

    def __init__(self, message: str, *, path: str | PathLike[str] | None = None, hint: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message.rstrip(".")
        if self.path:
            text = f"{self.path}: {text}"
        if self.hint:
            text = f"{text}. Fix: {self.hint.rstrip('.')}"
        return text if text.endswith(("?", "!", ".")) else text + "."


class InputError(MedsegError):
    """An input image or mask cannot be used (unreadable, wrong shape, NaNs, empty, ...)."""


class DicomInputError(InputError):
    """A DICOM file or series is corrupt, not an image, mixed, or otherwise unusable."""


class GeometryError(InputError):
    """Geometry is inconsistent: missing or duplicated slices, mixed orientation, shape mismatch."""


class ConfigError(MedsegError):
    """A configuration file or override is invalid (unknown key, wrong type, missing path)."""


class CheckpointError(MedsegError):
    """A checkpoint folder is missing, corrupt, or does not match the model it describes."""


class ModelError(MedsegError):
    """A model cannot be built as asked (unknown encoder, missing weights, bad input size)."""


class TrainingError(MedsegError):
    """Training cannot go on (non-finite loss, empty dataset, ...)."""


class ExportError(MedsegError):
    """A result cannot be written in the requested format."""

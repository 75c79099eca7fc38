"""The one family of errors that mean "the user's input is at fault".

Everything here is raised by the library where a setting, a file, a path, a device or an amount
of memory the user asked for cannot be used; the message says what was wrong, the valid range, and what to do. The CLI prints these as one
line and exits with status 2, the nodes show them as the node's error. Any other exception is a bug
and keeps its traceback.

The subclasses also derive from the built-in exception a caller would have caught before
(ValueError, FileNotFoundError, ...), so code written against those keeps working.
"""

from __future__ import annotations


class LPDError(Exception):
    """A problem with the user's input, reported as one line."""


class SettingError(LPDError, ValueError):
    """A generation, schedule or editing setting outside its valid range (or not a finite number)."""


class CheckpointError(LPDError, ValueError):
    """A checkpoint file that cannot be used: missing, unreadable, truncated, of the wrong kind, or
    not matching its partner (model vs tokenizer)."""


class DownloadError(LPDError, RuntimeError):
    """A checkpoint is not on disk and could not be fetched (offline, Hub unreachable, file not found)."""


class OutputError(LPDError, OSError):
    """An output path that cannot be written (folder missing or read-only, unknown image type)."""


class DeviceError(LPDError, RuntimeError):
    """The requested device is not available in this torch build or on this machine."""


class NotEnoughMemoryError(LPDError, MemoryError):
    """A run that cannot fit in the device's available memory, even in chunks; refused before it
    allocates anything, with the figures and how many images would fit."""


class ResumeError(LPDError, ValueError):
    """A bulk-sampling folder that holds another run's images (other weights or settings)."""

"""Exceptions raised by mvdecor.

Every error a user can cause (a bad file, a bad argument, a missing optional
backend) is a subclass of :class:`MvDecorError`. Errors about a file carry the
file's path and a one-line reason, so the command line can print
``error: <path>: <reason>`` and exit non-zero without a traceback.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from os import PathLike


class MvDecorError(Exception):
    """Base class of every error mvdecor raises on purpose."""


class FileError(MvDecorError):
    """An error about one file: ``str(err)`` is ``"<path>: <reason>"``.

    Parameters
    ----------
    path
        The offending file (or folder).
    reason
        One line saying what is wrong with it.
    """

    def __init__(self, path: str | PathLike[str] | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(reason if self.path is None else f"{self.path}: {reason}")


class MeshLoadError(FileError):
    """A mesh file is missing, unreadable, or in a format mvdecor cannot read."""


class UnsupportedFormatError(MeshLoadError):
    """The file's extension names no mesh format mvdecor reads."""


class InvalidMeshError(FileError):
    """The mesh was read but its content is unusable (no faces, NaN vertices...)."""


class LabelError(FileError):
    """Labels that do not fit their mesh (wrong count, unreadable label file...)."""


class RenderStoreError(FileError):
    """A stored render is corrupt, truncated, or from an incompatible version."""


class ConfigError(FileError):
    """A configuration file or value is invalid."""


class BackendUnavailableError(MvDecorError):
    """An optional backend (e.g. the embreex ray caster) is not installed."""


class RenamedKeyWarning(UserWarning):
    """A configuration file or override uses a key's old name (still read, for now)."""


class MissingTextureWarning(UserWarning):
    """A texture image referenced by a mesh is missing; material colour is used."""


# ------------------------------------------------------------------- warnings
# The command line shows warnings as one line each; these live here, at the bottom of the
# package, so that worker processes started anywhere can show them the same way.
def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``mvdecor: warning: <message>`` on one line: no source path, no code line.

    Warnings of other packages keep their class name, e.g. ``UserWarning: ...``.
    """
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    if not category.__module__.startswith("mvdecor"):
        text = f"{category.__name__}: {text}"
    stream = file if file is not None else sys.stderr
    if stream is None:  # pythonw: no console
        return
    with contextlib.suppress(OSError):
        stream.write(f"mvdecor: warning: {text}\n")


def install_warning_display(one_line: bool) -> None:
    """In a worker process: show warnings as the parent does (:func:`show_warning` when ``one_line``).

    Spawned processes start with Python's default display; pass
    ``warnings.showwarning is show_warning`` from the parent.
    """
    if one_line:
        warnings.showwarning = show_warning

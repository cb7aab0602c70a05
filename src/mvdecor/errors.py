"""Exceptions raised by mvdecor.

Every error a user can cause (a bad file, a bad argument, a missing optional
backend) is a subclass of :class:`MvDecorError`. Errors about a file carry the
file's path and a one-line reason, so the command line can print
``error: <path>: <reason>`` and exit non-zero without a traceback.
"""

from __future__ import annotations

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

"""Meshes added to an app folder from the page: checked, staged, loaded, then published.

A mesh sent by the page (``PUT /api/meshes/<name>``) is written into a hidden
staging folder ``.mvdecor-upload-<pid>-<random>/staged/`` inside the app's
folder (two levels down, so the folder adapter never lists it, and on the same
file system as the mesh's final place), loaded there with the adapter's loader,
then published under its name with a hard link, which, unlike a rename, never
replaces an existing file. The staging folder is always removed; stale ones of
dead processes go when the app starts (:func:`remove_stale_uploads`). Nothing
half-written is ever left under a mesh's name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from mvdecor.app.folder import AppFolder, UnsafePathError
from mvdecor.data.datasets import safe_shape_id
from mvdecor.data.io import SUPPORTED_EXTENSIONS, gltf_external_files, load_mesh
from mvdecor.errors import FileError, MvDecorError, UnsupportedFormatError

__all__ = [
    "UPLOAD_STAGING_PREFIX",
    "MeshExistsError",
    "MeshUploadError",
    "add_mesh",
    "new_mesh_path",
    "remove_stale_uploads",
    "upload_staging",
]

#: Hidden folders an upload is staged in: ``.mvdecor-upload-<pid>-<random>/staged/<name>``.
UPLOAD_STAGING_PREFIX = ".mvdecor-upload-"
#: The longest file name an upload may have (bytes of UTF-8; file systems allow 255).
_MAX_NAME_BYTES = 200


class MeshExistsError(MvDecorError):
    """An added mesh whose file name or shape id the folder already has (nothing is overwritten)."""


class MeshUploadError(FileError):
    """An added mesh that the folder's loader cannot read (it is not added)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def new_mesh_path(folder: AppFolder, name: str) -> tuple[Path, str]:
    """``(FOLDER/name, shape id)`` for a mesh file added as ``name``, once checked.

    ``name`` must be a plain file name (no folder, not hidden) with one of the
    loader's extensions (:data:`~mvdecor.data.io.SUPPORTED_EXTENSIONS`), and
    neither the name nor the shape id it gives may be taken.

    Raises
    ------
    UnsafePathError
        ``name`` has a folder in it, is ``..``, or resolves outside the folder.
    UnsupportedFormatError
        Not a mesh format the folder reads.
    FileError
        Hidden, too long, or with control characters.
    MeshExistsError
        A file of that name, or a mesh of that shape id, is already there.
    """
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise UnsafePathError(name, "give a plain file name (no folders, no '..')")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise FileError(repr(name), "control characters are not allowed in a file name")
    if name.startswith("."):
        raise FileError(name, "hidden files (a name starting with '.') cannot be added")
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        raise FileError(name[:40] + "...", f"file name over {_MAX_NAME_BYTES} bytes")
    ext = Path(name).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise UnsupportedFormatError(
            name,
            f"not a mesh format this folder reads ({ext or 'no extension'}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)})",
        )
    path = folder.safe_path(name)
    if path.parent != folder.root:
        raise UnsafePathError(name, "must name a file at the top of the folder")
    if os.path.lexists(folder.root / name):
        raise MeshExistsError(f"{name} is already in the folder (rename the file to add it as a new mesh)")
    shape_id = safe_shape_id(Path(name).stem)
    if shape_id in folder.refresh().shape_ids():
        taken = folder.relative(Path(folder.dataset.mesh_path(shape_id)))
        raise MeshExistsError(
            f"the folder already has a mesh {shape_id!r} ({taken}); rename {name} to add it as a new mesh"
        )
    return path, shape_id


@contextlib.contextmanager
def upload_staging(folder: AppFolder, name: str) -> Iterator[Path]:
    """A path to write an added mesh ``name`` to before :func:`add_mesh`; removed afterwards.

    It lies in a hidden folder inside the app's folder, two levels down (the adapter
    reads one mesh per sub-folder, so it never lists it), on the same file
    system as the mesh's final place. The staging folder is removed when the
    block ends, however it ends.
    """
    stage = folder.check_inside(folder.root / f"{UPLOAD_STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(6)}")
    inner = stage / "staged"
    inner.mkdir(parents=True)
    try:
        yield inner / name
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def remove_stale_uploads(folder: AppFolder) -> list[Path]:
    """Remove the staging folders of uploads whose process is gone (killed mid-upload)."""
    removed = []
    for stage in folder.root.glob(f"{UPLOAD_STAGING_PREFIX}*"):
        pid = stage.name[len(UPLOAD_STAGING_PREFIX) :].split("-", 1)[0]
        if not stage.is_dir() or stage.is_symlink() or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue  # an upload in progress (here, or in another app on this folder)
        shutil.rmtree(stage, ignore_errors=True)
        removed.append(stage)
    return removed


def add_mesh(folder: AppFolder, staged: Path, name: str) -> str:
    """Add the mesh file ``staged`` (from :func:`upload_staging`) to the folder as ``name``.

    The file is loaded with the adapter's loader first; only a mesh that loads
    is published, by a hard link (never over an existing file; a rename when
    the file system has no hard links), and the mesh list is re-scanned. A
    glTF must be self-contained: its buffers and images embedded (``data:``
    URIs, or a GLB's own binary chunk), since only one file is sent.

    Returns
    -------
    str
        The new mesh's shape id.

    Raises
    ------
    MeshUploadError
        The file does not load (the loader's reason) or refers to other files.
    MeshExistsError
        The name or the shape id was taken meanwhile.
    """
    path, shape_id = new_mesh_path(folder, name)
    ext = path.suffix.lower()
    external = gltf_external_files(staged) if ext in (".gltf", ".glb") else []
    if external:
        kind, uri = external[0]
        raise MeshUploadError(
            name,
            f"refers to the separate file '{uri}' ({kind}); only one file can be added: "
            "export a .glb or a .gltf with embedded data",
        )
    try:
        load_mesh(staged, name=shape_id)
    except FileError as exc:
        raise MeshUploadError(name, exc.reason) from None
    except Exception as exc:  # an uploaded file may trip a reader anywhere
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MeshUploadError(name, f"cannot read the file ({reason[:200]})") from None
    with open(staged, "rb+") as handle:
        os.fsync(handle.fileno())
    with folder.lock:
        path, shape_id = new_mesh_path(folder, name)  # another upload may have taken it meanwhile
        try:
            os.link(staged, path)
        except FileExistsError:
            raise MeshExistsError(f"{name} is already in the folder") from None
        except OSError:  # no hard links on this file system: a rename, after the check above
            os.rename(staged, path)
        folder.refresh()
    return shape_id

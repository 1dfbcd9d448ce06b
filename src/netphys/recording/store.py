"""Save and load recordings with all coordinates and provenance."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from .._validation import NetphysError, param_error
from ..io import load_dataset, save_dataset


class _UnwritablePathError(NetphysError, OSError):
    """A path that cannot be written: a :class:`NetphysError` that is still an ``OSError``."""


def save_recording(recording: xr.DataArray, path) -> Path:
    """Write a recording to netCDF (atomic: a temp file renamed into place).

    Raises
    ------
    NetphysError
        ``recording`` is not a DataArray, or ``path`` cannot be written (a read-only folder, a path
        below a file, a full disk); the message names the path and the operating system's reason, and
        the error is also an ``OSError``.
    """
    func = "save_recording"
    if not isinstance(recording, xr.DataArray):
        raise param_error("recording", func, "an xarray.DataArray from record()", type(recording).__name__)
    try:
        return save_dataset(recording, path)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        err = param_error("path", func, "a file path in a folder you can write to", str(path),
                          f"writing failed: {type(exc).__name__}: {reason}{where}; choose another path")
        raise _UnwritablePathError(str(err)) from exc


def load_recording(path) -> xr.DataArray:
    """Read a recording written by :func:`save_recording` (coordinates and provenance intact)."""
    path = Path(path)
    if not path.is_file():
        raise param_error("path", "load_recording", "an existing netCDF file", str(path))
    return load_dataset(path)

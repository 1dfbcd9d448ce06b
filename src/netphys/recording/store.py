"""Save and load recordings with all coordinates and provenance."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from .._validation import param_error
from ..io import load_dataset, save_dataset


def save_recording(recording: xr.DataArray, path) -> Path:
    """Write a recording to netCDF (atomic: a temp file renamed into place)."""
    if not isinstance(recording, xr.DataArray):
        raise param_error("recording", "save_recording", "an xarray.DataArray from record()",
                          type(recording).__name__)
    return save_dataset(recording, path)


def load_recording(path) -> xr.DataArray:
    """Read a recording written by :func:`save_recording` (coordinates and provenance intact)."""
    path = Path(path)
    if not path.is_file():
        raise param_error("path", "load_recording", "an existing netCDF file", str(path))
    return load_dataset(path)

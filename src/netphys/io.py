"""Atomic writes and labelled-array storage (netCDF via h5netcdf)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: the process umask, read once (reading it means setting it, which is not thread-safe)
_UMASK = _umask()


def _publish(tmp: str, path: Path) -> None:
    """Give the temp file the mode an ordinary ``open()`` would (mkstemp makes it 0600), then rename."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, renamed into place, so a
    failed write leaves no partial file and an existing file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _clean_attrs(attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, str):
            out[k] = str(v)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out[k] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[k] = float(v)
        else:
            out[k] = "json:" + json.dumps(v, default=str)
    return out


def _restore_attrs(attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, str) and v.startswith("json:"):
            out[k] = json.loads(v[5:])
        else:
            out[k] = v.item() if isinstance(v, np.generic) else v
    return out


def save_dataset(obj, path) -> Path:
    """Write an xarray DataArray/Dataset to netCDF atomically (temp file + rename).

    Object-dtype coordinates (strings) are stored as unicode; non-scalar attrs as JSON strings.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = obj.to_dataset(name=obj.name or "data") if isinstance(obj, xr.DataArray) else obj.copy()
    ds.attrs = _clean_attrs(ds.attrs)
    ds.attrs["_netphys_kind"] = "DataArray" if isinstance(obj, xr.DataArray) else "Dataset"
    for name in list(ds.variables):
        var = ds[name]
        var.attrs = _clean_attrs(var.attrs)
        if var.dtype == object or var.dtype.kind == "b":
            ds[name] = var.astype(str) if var.dtype == object else var.astype("int8")
            if var.dtype.kind == "b":
                ds[name].attrs["_netphys_bool"] = 1
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        _publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_dataset(path):
    """Read what :func:`save_dataset` wrote (returns a DataArray or a Dataset, as saved)."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
    kind = ds.attrs.pop("_netphys_kind", "Dataset")
    ds.attrs = _restore_attrs(ds.attrs)
    for name in list(ds.variables):
        if ds[name].attrs.pop("_netphys_bool", 0):
            ds[name] = ds[name].astype(bool)
        ds[name].attrs = _restore_attrs(ds[name].attrs)
    if kind == "DataArray":
        (name,) = list(ds.data_vars)
        da = ds[name]
        da.attrs = {**ds.attrs, **da.attrs}
        return da
    return ds

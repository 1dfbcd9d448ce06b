"""Atomic writes and labelled-array storage (unit + integration tier)."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import xarray as xr

from netphys import io


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_creates_and_replaces(tmp_path):
    p = tmp_path / "deep" / "er" / "f.txt"
    io.atomic_write_text(p, "héllo")
    assert p.read_text(encoding="utf-8") == "héllo"
    io.atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert not _leftovers(p.parent)


def test_atomic_write_gets_ordinary_permissions(tmp_path):
    p = tmp_path / "f.txt"
    io.atomic_write_text(p, "x")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(p.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_failed_write_leaves_existing_file_intact(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    io.atomic_write_text(p, "original")

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_text(p, "new content that never lands")
    assert p.read_text() == "original"
    with pytest.raises(OSError):
        io.atomic_write_text(tmp_path / "g.txt", "x")
    assert not (tmp_path / "g.txt").exists()
    assert not _leftovers(tmp_path)


def test_interrupted_write_cleans_up(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"

    def interrupt(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        io.atomic_write_bytes(p, b"abc")
    assert not p.exists() and not _leftovers(tmp_path)


def test_dataset_round_trip(tmp_path):
    ds = xr.Dataset(
        {"x": (("a", "b"), np.arange(6, dtype=np.float32).reshape(2, 3)),
         "flag": ("a", np.array([True, False]))},
        coords={"a": [10, 20], "name": ("b", np.array(["u", "", "wörd"], dtype=object)),
                "b": [0, 1, 2]},
        attrs={"s": "text", "i": 3, "f": 0.5, "lst": [1, 2], "d": {"k": [1, "v"]}, "none": None,
               "flag": True},
    )
    ds["x"].attrs["units"] = "spikes"
    path = io.save_dataset(ds, tmp_path / "ds.nc")
    back = io.load_dataset(path)
    assert isinstance(back, xr.Dataset)
    assert back["flag"].dtype == bool and back["flag"].values.tolist() == [True, False]
    assert back["name"].values.tolist() == ["u", "", "wörd"]
    assert back.attrs == ds.attrs
    assert back["x"].attrs == {"units": "spikes"}
    np.testing.assert_array_equal(back["x"].values, ds["x"].values)
    assert back["x"].dtype == np.float32
    # the caller's object is not modified by saving
    assert ds["flag"].dtype == bool and ds.attrs["lst"] == [1, 2]


def test_dataarray_round_trip(tmp_path):
    da = xr.DataArray(np.random.default_rng(0).normal(size=(3, 2)), dims=("stimulus", "unit"),
                      coords={"layer": ("unit", ["conv1_1", "fc6"]), "row": ("unit", [3, -1])},
                      name="activation", attrs={"model": "m", "seed": 0, "layers": ["conv1_1", "fc6"]})
    da = da.assign_coords(fc=("unit", [False, True]))
    back = io.load_dataset(io.save_dataset(da, tmp_path / "da.nc"))
    assert isinstance(back, xr.DataArray)
    xr.testing.assert_identical(back, da)
    assert back.attrs == {"model": "m", "seed": 0, "layers": ["conv1_1", "fc6"]}
    assert back.fc.dtype == bool
    assert da.attrs["layers"] == ["conv1_1", "fc6"] and da.fc.dtype == bool  # the original is untouched


def test_failed_save_dataset_leaves_existing_file(tmp_path, monkeypatch):
    da = xr.DataArray(np.zeros(3), dims="x", name="v")
    p = io.save_dataset(da, tmp_path / "a.nc")
    before = p.read_bytes()
    monkeypatch.setattr(xr.Dataset, "to_netcdf", lambda self, *a, **k: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        io.save_dataset(da + 1, p)
    assert p.read_bytes() == before and not _leftovers(tmp_path)

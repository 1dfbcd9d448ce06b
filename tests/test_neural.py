"""Tests of netphys.neural: data model, user-data constructors and the real-data loaders."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from netphys._validation import NetphysError
from netphys.neural import (
    NeuralDataset,
    default_shared_root,
    from_arrays,
    from_files,
    load_allen_v1,
    load_cowley_v4,
    load_ecker_v1,
)

# --------------------------------------------------------------------------- synthetic files
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def _jpeg(colour, size=8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _write_zip(path: Path, n: int, prefix: str = "", order=None):
    order = range(1, n + 1) if order is None else order
    with zipfile.ZipFile(path, "w") as zf:
        if prefix:
            zf.writestr(prefix, b"")  # the folder entry, as in the real 190923 zip
        for k in order:
            zf.writestr(f"{prefix}image{k:04d}.jpg", _jpeg(COLOURS[k - 1]))


@pytest.fixture
def cowley_root(tmp_path):
    """A miniature cowley-v4 folder: sessions S1 (zip out of name order) and S2 (images in a sub-folder)."""
    root = tmp_path / "shared" / "cowley-v4"
    (root / "responses_repeat_averaged").mkdir(parents=True)
    (root / "responses_raw").mkdir()
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    raw = rng.poisson(3.0, size=(3, 5, 4)).astype(float)
    raw[0, 1, 2:] = np.nan  # image 2 shown only twice to neuron 0
    raw[:, 4, 3] = np.nan
    np.save(root / "responses_raw" / "responses_S1.npy", raw)
    np.save(root / "responses_repeat_averaged" / "responses_S1.npy", np.nanmean(raw, axis=2))
    np.save(root / "responses_repeat_averaged" / "responses_S2.npy", rng.random((2, 4)))
    _write_zip(root / "images" / "images_S1.zip", 5, order=[3, 1, 5, 2, 4])
    _write_zip(root / "images" / "images_S2.zip", 4, prefix="images_S2/")
    return root


def _ecker_session(n_units, conditions, n_rep, date, rng, names=("orientation", "contrast")):
    cond = np.zeros((1, len(conditions)), dtype=[(names[0], "O"), (names[1], "O")])
    for i, (a, b) in enumerate(conditions):
        cond[0, i][names[0]] = a
        cond[0, i][names[1]] = b
    spikes = rng.poisson(0.3, size=(n_units, len(conditions), 90, n_rep)).astype(np.uint8)
    return {"date": date, "subject": "H", "conditions": cond,
            "contamination": np.linspace(0.01, 0.1, n_units) if n_units > 1 else 0.2,
            "tetrode": np.arange(1, n_units + 1, dtype=np.uint8),
            "spikes": spikes, "times": np.arange(-195, 700, 10, dtype=np.int16)}


@pytest.fixture
def ecker_root(tmp_path):
    """Miniature ecker-v1-gratings .mat files with the real struct layout (cell array of structs)."""
    import scipy.io

    root = tmp_path / "ecker-v1-gratings"
    root.mkdir()
    rng = np.random.default_rng(1)
    static = [(o, c) for o in (0.0, 22.5, 45.0) for c in (1.0, 10.0)]
    s1 = _ecker_session(4, static, 5, "2008-09-01_13-34-21", rng)
    s1["spikes"][:, 2, :, 0] = 0  # a padded (silent) trial: condition 2, repeat 0
    s2 = _ecker_session(1, static[:4], 1, "2002-04-01", rng)  # squeezed to (conditions, bins)
    data = np.empty((1, 2), dtype=object)
    data[0, 0], data[0, 1] = s1, s2
    scipy.io.savemat(root / "data_v1_binned_static.mat", {"data": data})
    moving = [(d, 100.0) for d in np.arange(0, 360, 45.0)]
    m1 = _ecker_session(3, moving, 4, "2003-06-18", rng, names=("direction", "contrast"))
    data = np.empty((1, 1), dtype=object)
    data[0, 0] = m1
    scipy.io.savemat(root / "data_v1_binned_moving.mat", {"data": data})
    return root, s1, s2, m1


@pytest.fixture
def allen_root(tmp_path):
    root = tmp_path / "allen-visp-ns118"
    root.mkdir()
    rng = np.random.default_rng(2)
    np.save(root / "all_input_scenes_118_961.npy", rng.integers(0, 256, size=(6, 961)).astype(float))
    np.save(root / "derived_mean_responses_118scenes_x_212cells.npy", rng.normal(size=(6, 4)))
    return root


# ------------------------------------------------------------------------------ data model
def test_from_arrays_model():
    rng = np.random.default_rng(0)
    v1, ll = rng.random((10, 4)), rng.random((10, 3))
    imgs = rng.integers(0, 255, size=(10, 6, 6, 3), dtype=np.uint8)
    ds = from_arrays({"V1": v1, "LL": ll}, images=imgs, labels=list("ababababab"),
                     attrs={"source": "synthetic"})
    assert isinstance(ds, NeuralDataset)
    assert ds.areas == ["V1", "LL"] and ds.n_stimuli == 10 and ds.n_units == {"V1": 4, "LL": 3}
    r = ds.responses("LL")
    assert r.dims == ("stimulus", "unit") and r.shape == (10, 3)
    np.testing.assert_array_equal(r.values, ll)
    np.testing.assert_array_equal(r["label"].values, list("ababababab"))
    assert ds.images is imgs or np.array_equal(ds.images, imgs)
    np.testing.assert_array_equal(ds.labels, list("ababababab"))
    assert ds.attrs["source"] == "synthetic" and not ds.has_repeats("V1")
    assert "V1: {'stimulus': 10, 'unit': 4}" in repr(ds)


def test_from_arrays_transpose_and_grayscale():
    rng = np.random.default_rng(0)
    ds = from_arrays({"V4": rng.random((5, 12))}, images=rng.random((12, 4, 4)), transpose=True)
    assert ds.responses("V4").shape == (12, 5) and ds.images.shape == (12, 4, 4)


def test_repeats_nanmean_and_dataframe():
    rng = np.random.default_rng(1)
    trials = rng.poisson(2.0, size=(4, 3, 5)).astype(float)
    trials[0, 0, 3:] = np.nan
    ds = from_arrays({"V1": trials}, stimuli=pd.DataFrame({"orientation": [0, 45, 90, 135]}))
    assert ds.has_repeats("V1")
    full = ds.responses("V1", average_repeats=False)
    assert full.dims == ("stimulus", "unit", "repeat")
    mean = ds.responses("V1")
    np.testing.assert_allclose(mean.values, np.nanmean(trials, axis=2))
    assert mean.values[0, 0] == pytest.approx(trials[0, 0, :3].mean())
    table = ds.to_dataframe(average_repeats=False)
    assert len(table) == trials.size - 2  # the NaN padding is left out
    assert {"area", "stimulus", "unit", "repeat", "response", "orientation"} <= set(table.columns)
    avg = ds.to_dataframe()
    assert len(avg) == 12 and "repeat" not in avg.columns
    assert avg.loc[(avg.stimulus == 2), "orientation"].unique().tolist() == [90]


@pytest.mark.parametrize("responses, kwargs, match", [
    ({"V1": np.zeros((10, 3)), "LM": np.zeros((9, 3))}, {},
     r"the 'responses' parameter of from_arrays must be arrays with the same number of stimuli \(rows\) in "
     r"every area, got \{'V1': 10, 'LM': 9\}; pass transpose=True"),
    ({"V1": np.zeros(10)}, {},
     r"the 'responses\['V1'\]' parameter of from_arrays must be an array of shape \(n_stimuli, n_units\) "
     r"or \(n_stimuli, n_units, n_repeats\), got 'shape \(10,\)'"),
    ({"V1": np.array([[1.0, np.nan], [2.0, 3.0]])}, {},
     r"the 'responses\['V1'\]' parameter of NeuralDataset must be finite \(no NaN or inf\), got '1 non-finite "
     r"value\(s\) in responses of shape \(2, 2\)'; NaN is only allowed as padding of missing trials"),
    ({"V1": np.full((2, 2, 3), np.nan)}, {},
     r"must be at least one finite repeat for every \(stimulus, unit\), got '4 pair\(s\) with only NaN"),
    ({"V1": np.zeros((4, 2))}, {"images": np.zeros((3, 5, 5, 3))},
     r"the 'images' parameter of NeuralDataset must be one image per stimulus \(4\), got '3 images'"),
    ({"V1": np.zeros((4, 2))}, {"images": np.zeros((4, 5))},
     r"'images' parameter of NeuralDataset must be an array of shape \(n_stimuli, H, W, 3\)"),
    ({"V1": np.zeros((4, 2))}, {"labels": [1, 2]},
     r"the 'labels' parameter of from_arrays must be one label per stimulus \(4\), got 'shape \(2,\)'"),
    ({}, {}, r"the 'responses' parameter of from_arrays must be a non-empty mapping"),
])
def test_from_arrays_errors(responses, kwargs, match):
    with pytest.raises(NetphysError, match=match):
        from_arrays(responses, **kwargs)


def test_unknown_area_and_bad_dataarray():
    ds = from_arrays({"V1": np.zeros((3, 2))})
    with pytest.raises(NetphysError, match=r"the 'area' parameter of NeuralDataset.responses must be one of "
                                           r"'V1', got 'V2'"):
        ds.responses("V2")
    bad = xr.DataArray(np.zeros((3, 2)), dims=("image", "unit"))
    with pytest.raises(NetphysError, match=r"must be a DataArray with dims \('stimulus', 'unit'\)"):
        NeuralDataset({"V1": bad})


def test_lazy_images_are_validated_on_access():
    ds = NeuralDataset({"V1": xr.DataArray(np.zeros((3, 2)), dims=("stimulus", "unit"))},
                       images=lambda: np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(NetphysError, match=r"one image per stimulus \(3\), got '2 images'"):
        _ = ds.images


# --------------------------------------------------------------------------------- files
def test_from_files_npy_csv_images_labels(tmp_path):
    rng = np.random.default_rng(3)
    v1 = rng.random((6, 4))
    np.save(tmp_path / "v1.npy", v1)
    lm = rng.random((3, 6))  # neurons x stimuli
    np.savetxt(tmp_path / "lm.csv", lm, delimiter=",", header="s0,s1,s2,s3,s4,s5", comments="")
    (tmp_path / "labels.txt").write_text("\n".join("abcabc") + "\n")
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for k in range(6):
        (img_dir / f"stim{k:02d}.jpg").write_bytes(_jpeg(COLOURS[k % 5]))
    ds = from_files({"V1": tmp_path / "v1.npy"}, images=img_dir, labels=tmp_path / "labels.txt")
    np.testing.assert_array_equal(ds.responses("V1").values, v1)
    assert ds.images.shape == (6, 8, 8, 3) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, list("abcabc"))
    assert ds.attrs["source_files"]["V1"].endswith("v1.npy")
    ds2 = from_files({"LM": tmp_path / "lm.csv"}, transpose=True)
    np.testing.assert_allclose(ds2.responses("LM").values, lm.T)


def test_from_files_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"the 'responses\['V1'\]' parameter of from_files must name "
                                                r"an existing .npy or .csv file, got '.*nope.npy' \(not found\)"):
        from_files({"V1": tmp_path / "nope.npy"})
    np.save(tmp_path / "v1.npy", np.zeros((3, 2)))
    with pytest.raises(FileNotFoundError, match="'images' parameter of from_files must name a .npy file or a "
                                                "folder"):
        from_files({"V1": tmp_path / "v1.npy"}, images=tmp_path / "missing")


# ------------------------------------------------------------------------ shared data root
def test_default_shared_root(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    target.mkdir()
    monkeypatch.setenv("NETPHYS_SHARED_DATA", str(target))
    assert default_shared_root() == target.resolve()
    monkeypatch.setenv("NETPHYS_SHARED_DATA", str(tmp_path / "absent"))
    assert default_shared_root() is None
    monkeypatch.delenv("NETPHYS_SHARED_DATA")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "checkout" / "tests").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "checkout" / "tests")
    assert default_shared_root() == (tmp_path / "shared" / "data").resolve()


def test_loader_without_root(monkeypatch, tmp_path):
    monkeypatch.setenv("NETPHYS_SHARED_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"the 'root' parameter of load_allen_v1 must name the "
                                                r"'allen-visp-ns118' folder .* got None .* set NETPHYS_SHARED_DATA"):
        load_allen_v1()


# ---------------------------------------------------------------------------------- Cowley
def test_cowley_synthetic(cowley_root):
    sessions = load_cowley_v4(cowley_root.parent)  # the shared folder that contains cowley-v4
    assert list(sessions) == ["S1", "S2"]
    s1 = sessions["S1"]
    assert s1.areas == ["V4"] and s1.responses("V4").shape == (5, 3)
    assert s1.attrs["session"] == "S1" and "Cowley" in s1.attrs["citation"] and "GPL" in s1.attrs["licence"]
    imgs = s1.images  # zip members out of name order: image i+1 <-> stimulus i regardless
    assert imgs.shape == (5, 8, 8, 3)
    for i in range(5):
        np.testing.assert_allclose(imgs[i].reshape(-1, 3).mean(0), COLOURS[i], atol=6)
    s2 = sessions["S2"]  # images in a sub-folder of the zip
    assert s2.images.shape == (4, 8, 8, 3)
    np.testing.assert_allclose(s2.images[3].reshape(-1, 3).mean(0), COLOURS[3], atol=6)
    np.testing.assert_array_equal(s2.responses("V4")["unit_id"].values, ["S2/000", "S2/001"])


def test_cowley_repeats_nan_padded(cowley_root):
    raw = load_cowley_v4(cowley_root, sessions=["S1"], repeats=True)["S1"]
    trials = raw.responses("V4", average_repeats=False)
    assert trials.dims == ("stimulus", "unit", "repeat") and trials.shape == (5, 3, 4)
    assert np.isnan(trials.values).sum() == 2 + 3
    avg = load_cowley_v4(cowley_root, sessions="S1", images=False)["S1"]
    np.testing.assert_allclose(raw.responses("V4").values, avg.responses("V4").values)
    assert avg.images is None


def test_cowley_errors(cowley_root, tmp_path):
    with pytest.raises(NetphysError, match=r"the 'sessions' parameter of load_cowley_v4 must be session ids "
                                           r"among S1, S2, got \['S9'\]"):
        load_cowley_v4(cowley_root, sessions=["S9"])
    with pytest.raises(FileNotFoundError, match=r"repeats=True\) expected single trials in .*responses_raw/"
                                                r"responses_<session>.npy' for session\(s\) \['S2'\]; only "
                                                r"\['S1'\] have them"):
        load_cowley_v4(cowley_root, repeats=True)
    with pytest.raises(FileNotFoundError, match=r"the 'root' parameter of load_cowley_v4 must name the "
                                                r"'cowley-v4' folder .* got '.*nowhere' \(not found\)"):
        load_cowley_v4(tmp_path / "nowhere")
    (cowley_root / "images" / "images_S2.zip").unlink()
    with pytest.raises(FileNotFoundError, match=r"expected the images of this session in '.*images_S2.zip' .*"
                                                r"pass images=False"):
        load_cowley_v4(cowley_root, sessions=["S2"])
    _write_zip(cowley_root / "images" / "images_S2.zip", 3)  # one image short
    with pytest.raises(NetphysError, match=r"holds image0001.jpg ... image0004.jpg .* got '3 images \(missing "
                                           r"e.g. \[4\]"):
        load_cowley_v4(cowley_root, sessions=["S2"])
    empty = tmp_path / "empty" / "cowley-v4"
    empty.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"expected the folder '.*responses_repeat_averaged' with "
                                                r"responses_<session>.npy files"):
        load_cowley_v4(empty)


# ----------------------------------------------------------------------------------- Ecker
def test_ecker_static_synthetic(ecker_root):
    root, s1, s2, _ = ecker_root
    sessions = load_ecker_v1(root, kind="static")
    assert list(sessions) == ["2008-09-01_13-34-21", "2002-04-01"]
    ds = sessions["2008-09-01_13-34-21"]
    trials = ds.responses("V1", average_repeats=False)
    assert trials.dims == ("stimulus", "unit", "repeat") and trials.shape == (6, 4, 5)
    times = np.arange(-195, 700, 10)
    window = (times >= 50) & (times < 550)
    expected = s1["spikes"][:, :, window, :].sum(axis=2).astype(float).transpose(1, 0, 2)
    expected[2, :, 0] = np.nan  # the silent (padded) trial
    np.testing.assert_array_equal(trials.values, expected)
    assert ds.attrs["n_missing_trials"] == 1 and ds.attrs["window_ms"] == (50.0, 550.0)
    np.testing.assert_array_equal(ds.stimuli["orientation"], [0, 0, 22.5, 22.5, 45, 45])
    np.testing.assert_array_equal(trials["contrast"].values, [1, 10, 1, 10, 1, 10])
    np.testing.assert_array_equal(trials["tetrode"].values, [1, 2, 3, 4])
    assert "CC BY-NC-ND 3.0" in ds.attrs["licence"] and ds.attrs["subject"] == "H"
    np.testing.assert_allclose(ds.responses("V1").values[2], np.nanmean(expected[2], axis=1))
    single = sessions["2002-04-01"].responses("V1", average_repeats=False)  # squeezed singleton axes
    assert single.shape == (4, 1, 1)
    assert single.values[0, 0, 0] == s2["spikes"][0, 0, window, 0].sum()


def test_ecker_options(ecker_root):
    root, s1, _, m1 = ecker_root
    keep = load_ecker_v1(root, drop_silent_trials=False)["2008-09-01_13-34-21"]
    assert keep.responses("V1", average_repeats=False).values[2, 0, 0] == 0
    early = load_ecker_v1(root, window=(-200, 0))["2008-09-01_13-34-21"]
    np.testing.assert_array_equal(early.responses("V1", average_repeats=False).values[0, :, 1],
                                  s1["spikes"][:, 0, :20, 1].sum(axis=1))
    clean = load_ecker_v1(root, max_contamination=0.05)["2008-09-01_13-34-21"]
    assert clean.n_units == {"V1": 2}
    np.testing.assert_array_equal(clean.responses("V1")["unit_index"].values, [0, 1])
    moving = load_ecker_v1(root, kind="moving")["2003-06-18"]
    np.testing.assert_array_equal(moving.stimuli["direction"], np.arange(0, 360, 45.0))
    assert moving.responses("V1").shape == (8, 3)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"kind": "drifting"}, NetphysError, r"the 'kind' parameter of load_ecker_v1 must be one of 'static', "
                                         r"'moving', got 'drifting'"),
    ({"window": (55, 550)}, NetphysError, r"the 'window' parameter of load_ecker_v1 must be a \(start, stop\) "
                                          r"pair in ms with -200 <= start < stop <= 700 on the 10 ms bin grid"),
    ({"window": (500, 100)}, NetphysError, r"'window' parameter"),
    ({"window": 50}, NetphysError, r"the 'window' parameter of load_ecker_v1 must be a \(start, stop\) pair"),
    ({"max_contamination": -1}, NetphysError, r"'max_contamination' parameter"),
])
def test_ecker_errors(ecker_root, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        load_ecker_v1(ecker_root[0], **kwargs)


def test_ecker_missing_file(tmp_path):
    (tmp_path / "ecker-v1-gratings").mkdir()
    with pytest.raises(FileNotFoundError, match=r"load_ecker_v1 expected '.*data_v1_binned_moving.mat'"):
        load_ecker_v1(tmp_path, kind="moving")


# ----------------------------------------------------------------------------------- Allen
def test_allen_synthetic(allen_root):
    ds = load_allen_v1(allen_root)
    assert ds.responses("V1").shape == (6, 4)
    assert ds.images.shape == (6, 31, 31) and ds.images.dtype == np.uint8
    raw = np.load(allen_root / "all_input_scenes_118_961.npy")
    np.testing.assert_array_equal(ds.images.reshape(6, -1), raw)
    assert ds.attrs["experiment_container_id"] == 511510667 and "Allen" in ds.attrs["licence"]


def test_allen_errors(allen_root):
    np.save(allen_root / "derived_mean_responses_118scenes_x_212cells.npy", np.zeros((5, 4)))
    with pytest.raises(NetphysError, match=r"with the same number of scenes, got 'shapes \(5, 4\) and \(6, 961\)'"):
        load_allen_v1(allen_root)
    (allen_root / "all_input_scenes_118_961.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"load_allen_v1 expected '.*all_input_scenes_118_961.npy' "
                                                r"\(scenes x 961 pixels"):
        load_allen_v1(allen_root)


# ------------------------------------------------------------------ real data (optional)
SHARED = default_shared_root()


def _needs(folder: str):
    return pytest.mark.skipif(SHARED is None or not (SHARED / folder).is_dir(),
                              reason=f"shared data '{folder}' not available")


@pytest.mark.shared
@_needs("cowley-v4")
def test_real_cowley_v4():
    sessions = load_cowley_v4(SHARED, images=False)
    assert len(sessions) == 12
    assert sum(ds.n_units["V4"] for ds in sessions.values()) == 598
    assert sessions["190923"].responses("V4").shape == (1200, 33)
    with_images = load_cowley_v4(SHARED, sessions=["190923"])["190923"]  # images in a zip sub-folder
    assert with_images.images.shape == (1200, 112, 112, 3) and with_images.images.dtype == np.uint8
    raw = load_cowley_v4(SHARED, sessions=["210325"], repeats=True, images=False)["210325"]
    assert raw.responses("V4", average_repeats=False).shape == (640, 50, 10)
    np.testing.assert_allclose(raw.responses("V4").values, sessions["210325"].responses("V4").values)


@pytest.mark.shared
@_needs("ecker-v1-gratings")
@pytest.mark.parametrize("kind, n_sessions, n_units", [("moving", 27, 577), ("static", 17, 307)])
def test_real_ecker_v1(kind, n_sessions, n_units):
    sessions = load_ecker_v1(SHARED, kind=kind)
    assert len(sessions) == n_sessions
    assert sum(ds.n_units["V1"] for ds in sessions.values()) == n_units
    for ds in sessions.values():
        r = ds.responses("V1")
        assert r.dims == ("stimulus", "unit") and np.isfinite(r.values).all()
    if kind == "moving":
        assert sessions["2003-07-04"].attrs["n_missing_trials"] == 9
        assert sessions["2008-08-09_12-28-59"].responses("V1", average_repeats=False).shape == (16, 38, 13)
    else:
        assert sessions["2002-04-01"].n_stimuli == 14


@pytest.mark.shared
@_needs("allen-visp-ns118")
def test_real_allen_v1_and_twonn():
    from netphys.stats.dimension import TwoNN

    ds = load_allen_v1(SHARED)
    assert ds.responses("V1").shape == (118, 212)
    assert ds.images.shape == (118, 31, 31)
    est = TwoNN().fit(ds.responses("V1"))
    assert 2 < est.dimension_ < 60 and est.n_used_ == 118


def test_unit_dim_like_recordings_and_legacy_neuron_alias():
    ds = from_arrays({"V1": np.arange(6.0).reshape(3, 2)})
    assert ds.responses("V1").dims == ("stimulus", "unit") and ds.n_units == {"V1": 2}
    assert "unit" in ds.to_dataframe().columns
    with pytest.warns(DeprecationWarning, match="n_neurons is deprecated; use n_units"):
        assert ds.n_neurons == {"V1": 2}
    old = xr.DataArray(np.arange(6.0).reshape(3, 2), dims=("stimulus", "neuron"))
    with pytest.warns(DeprecationWarning, match="the 'neuron' dim is deprecated"):
        legacy = NeuralDataset({"V1": old})
    np.testing.assert_array_equal(legacy.responses("V1").values, old.values)
    assert legacy.responses("V1").dims == ("stimulus", "unit")
    with pytest.warns(DeprecationWarning, match="'neuron' dim"):
        assert from_arrays({"V1": old}).responses("V1").dims == ("stimulus", "unit")

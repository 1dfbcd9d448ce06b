"""Diverse stimulus sets (PCA -> k-means -> nearest image) and their coverage diagnostics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.optimize import linear_sum_assignment
from torch import nn

from netphys import NetphysError, NetphysWarning
from netphys.stimuli import StimulusSet, coverage, diverse_subset
from netphys.stimuli.selection import _assign


def clustered(n_clusters=160, per=10, dim=20, spread=0.05, seed=0):
    """Points around ``n_clusters`` well-separated centres: ``(features, true cluster of each point)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (n_clusters, dim))
    truth = np.repeat(np.arange(n_clusters), per)
    return centres[truth] + rng.normal(0, spread, (len(truth), dim)), truth


@pytest.fixture(scope="module")
def clusters160():
    return clustered()


# ----------------------------------------------------------------------------- known answers
def test_one_image_per_true_cluster(clusters160):
    x, truth = clusters160
    ds = diverse_subset(x, 160, random_state=0)
    idx = ds["index"].values
    assert idx.shape == (160,) and np.unique(idx).size == 160
    assert sorted(truth[idx]) == list(range(160))  # every true cluster exactly once
    assert (ds["cluster_size"].values == 10).all()
    assert ds["nearest"].values.all() and ds.attrs["reassigned"] == 0
    # 20 features: the 300 components requested are clipped, and said so
    assert ds.attrs["n_components"] == 20 and ds.attrs["n_components_requested"] == 300
    assert ds.sizes["component"] == 20 and ds.attrs["k"] == 160 and ds.attrs["random_state"] == 0
    np.testing.assert_allclose(ds["explained_variance_ratio"].sum(), 1.0)


def test_pca_truncates_to_300_components():
    x, truth = clustered(n_clusters=40, per=10, dim=400, seed=1)
    ds = diverse_subset(x, 40, random_state=0)
    assert ds.attrs["n_components"] == 300 and ds.sizes["component"] == 300 and ds.sizes["unit"] == 400
    assert sorted(truth[ds["index"].values]) == list(range(40))


def test_selection_equals_nearest_in_raw_space():
    """With all components (>= rank) PCA is a rotation of the centred data: the image nearest each centre
    is the same in the raw (centred) feature space."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 8)) @ rng.normal(size=(8, 12))  # rank 8 in 12 features
    ds = diverse_subset(x, 7, n_components=12, random_state=0)
    comps, mean = ds["components"].values, ds["mean"].values
    scores = (x - mean) @ comps.T
    # the stored projection reproduces the k-means space: each centre is the mean of its cluster's scores
    lab = ds["assignment"].values
    for j in range(7):
        np.testing.assert_allclose(ds["centre"].values[j], scores[lab == j].mean(0), atol=1e-8)
    raw_centres = ds["centre"].values @ comps + mean
    d = ((raw_centres[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    assert ds["nearest"].values.all()
    np.testing.assert_array_equal(ds["index"].values, d.argmin(1))
    np.testing.assert_allclose(ds["distance"].values, np.sqrt(d.min(1)), rtol=1e-8)


def test_seeds():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 10))
    a = diverse_subset(x, 20, random_state=0)["index"].values
    np.testing.assert_array_equal(a, diverse_subset(x, 20, random_state=0)["index"].values)
    assert not np.array_equal(np.sort(a), np.sort(diverse_subset(x, 20, random_state=1)["index"].values))
    g = diverse_subset(x, 20, random_state=np.random.default_rng(5))
    assert g.attrs["random_state"] == "generator" and np.unique(g["index"].values).size == 20


def test_dataarray_input_keeps_stimulus_coords():
    x, _ = clustered(n_clusters=10, per=5, dim=6)
    da = xr.DataArray(x, dims=("stimulus", "unit"),
                      coords={"stimulus": np.arange(50), "source": ("stimulus", [f"im{i}" for i in range(50)])})
    ds = diverse_subset(da, 10, random_state=0)
    np.testing.assert_array_equal(ds["index"].values, diverse_subset(x, 10, random_state=0)["index"].values)
    # dims in the other order: the stimulus dimension is found by name
    np.testing.assert_array_equal(ds["index"].values, diverse_subset(da.T, 10, random_state=0)["index"].values)
    assert list(ds["source"].values[ds["index"].values]) == [f"im{i}" for i in ds["index"].values]


# ----------------------------------------------------------------------------- no duplicates
def test_k_equals_n_images_takes_every_image():
    x = np.random.default_rng(1).normal(size=(12, 5))
    ds = diverse_subset(x, 12, random_state=0)
    assert sorted(ds["index"].values) == list(range(12))


def test_duplicated_points_give_distinct_images():
    """5 distinct points, each 4 times: k = 8 centres must share points, yet no image is taken twice."""
    base = np.random.default_rng(2).normal(0, 5, (5, 4))
    x = np.repeat(base, 4, axis=0)
    with pytest.warns(NetphysWarning, match="fewer distinct clusters than k=8"):
        ds = diverse_subset(x, 8, random_state=0)
    idx = ds["index"].values
    assert np.unique(idx).size == 8
    np.testing.assert_allclose(ds["distance"].values, 0.0, atol=1e-6)  # each centre on a copy of its point


def test_assignment_shared_nearest_image():
    """Three coinciding centres whose nearest image is the same: distinct images, least total distance."""
    z = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    centres = np.array([[0.0], [0.0], [0.0]])
    idx, dist = _assign(centres, z)
    assert sorted(idx) == [0, 1, 2]
    np.testing.assert_allclose(sorted(dist), [0.0, 1.0, 2.0])


def test_assignment_is_optimal_not_greedy():
    """Greedy (closest pair first) takes c0->a (0.9), then c1->b (3): total 3.9; the optimum is c0->b,
    c1->a (1.1 + 1 = 2.1)."""
    z = np.array([[0.0, 0.0], [2.0, 0.0]])  # a, b
    centres = np.array([[0.9, 0.0], [-1.0, 0.0]])
    idx, dist = _assign(centres, z)
    np.testing.assert_array_equal(idx, [1, 0])
    np.testing.assert_allclose(dist, [1.1, 1.0])


def test_assignment_matches_full_problem():
    """Solving on each centre's k nearest images gives the optimum of the full assignment problem."""
    rng = np.random.default_rng(7)
    for _ in range(5):
        z = rng.normal(size=(200, 3))
        centres = rng.normal(size=(15, 3)) * 0.2  # crowded centres: many shared nearest images
        idx, dist = _assign(centres, z)
        d = np.sqrt(((centres[:, None] - z[None]) ** 2).sum(-1))
        r, c = linear_sum_assignment(d)
        assert np.unique(idx).size == 15
        np.testing.assert_allclose(dist.sum(), d[r, c].sum(), rtol=1e-10)


# ----------------------------------------------------------------------------- coverage
def test_coverage_beats_random_subsets():
    x, _ = clustered(n_clusters=40, per=10, dim=10, seed=4)
    sel = diverse_subset(x, 40, random_state=0)
    cov = coverage(x, sel, n_random=50, random_state=0)
    assert list(cov["metric"].values) == ["mean_nearest_distance", "max_nearest_distance",
                                          "mean_pairwise_distance", "cluster_fraction"]
    assert cov.sizes["realisation"] == 50
    mnd = cov.sel(metric="mean_nearest_distance")
    assert mnd["percentile"] == 0.0 and (mnd["selected"] < mnd["random"]).all()
    assert str(mnd["better"].values) == "lower"
    cf = cov.sel(metric="cluster_fraction")
    assert cf["selected"] == 1.0 and cf["percentile"] == 100.0
    assert 0.4 < float(cf["random_mean"]) < 0.85  # about 1 - (1 - 1/40)^40 = 0.64
    np.testing.assert_allclose(cov["random_mean"], cov["random"].mean("realisation"))
    # an array index gives the same answer as the Dataset; and the same seed the same random subsets
    same = coverage(x, sel["index"].values, n_random=50, random_state=0)
    np.testing.assert_array_equal(cov["random"].values, same["random"].values)


def test_coverage_known_values():
    """Pool on a line, subset {0, 4}: nearest distances 0 1 2 1 0 -> mean 0.8, max 2; pairwise 4."""
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    cov = coverage(x, [0, 4], n_random=5, random_state=0)
    np.testing.assert_allclose(cov["selected"].sel(metric="mean_nearest_distance"), 0.8)
    np.testing.assert_allclose(cov["selected"].sel(metric="max_nearest_distance"), 2.0)
    np.testing.assert_allclose(cov["selected"].sel(metric="mean_pairwise_distance"), 4.0)


# ----------------------------------------------------------------------------- StimulusSet method
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)  # test-local model weights; the library itself never seeds
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 7 * 7, 10))
    imgs = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    return model.eval(), StimulusSet.from_arrays(imgs, np.arange(30) % 3, name="pool")


def test_select_diverse_on_model_output(tiny):
    model, st = tiny
    out = st.select_diverse(model, k=6, random_state=0)
    assert isinstance(out, StimulusSet) and len(out) == 6
    pool = out.coords["diverse_pool_index"].to_numpy()
    assert np.unique(pool).size == 6
    assert list(out.coords["source"]) == [f"pool[{i}]" for i in pool]
    np.testing.assert_array_equal(out.load_images(), st.load_images(pool))
    assert out.attrs["diverse_layer"] == "fc2" and out.attrs["diverse_k"] == 6
    sel = out.attrs["diverse_selection"]
    assert sel.attrs["layer"] == "fc2" and sel.attrs["n_components"] == 10
    # layer=None is the final Linear, i.e. the model's output: the same selection from the logits
    with torch.no_grad():
        logits = model(st.tensor()).numpy()
    np.testing.assert_array_equal(pool, diverse_subset(logits, 6, random_state=0)["index"].values)
    # same seed, same stimuli
    again = st.select_diverse(model, k=6, random_state=0, batch_size=7)
    np.testing.assert_array_equal(again.coords["diverse_pool_index"], pool)


def test_select_diverse_named_layer(tiny):
    model, st = tiny
    out = st.select_diverse(model, "conv1", k=5, n_components=20)
    assert len(out) == 5 and out.coords["diverse_pool_index"].nunique() == 5
    assert out.attrs["diverse_selection"].sizes["unit"] == 4 * 7 * 7


# ----------------------------------------------------------------------------- bad inputs
X = np.random.default_rng(0).normal(size=(20, 4))
X_NAN = X.copy()
X_NAN[3, 1] = np.nan


@pytest.mark.parametrize("kwargs, match", [
    ({"features": X, "k": 1}, r"the 'k' parameter of diverse_subset must be an int in \[2, 20\], got 1"),
    ({"features": X, "k": 21}, r"the 'k' parameter of diverse_subset must be an int in \[2, 20\], got 21"),
    ({"features": X, "k": 2.5}, r"the 'k' parameter of diverse_subset must be an int"),
    ({"features": X_NAN, "k": 3}, (r"the 'features' parameter of diverse_subset must be finite \(no NaN or inf\), "
                                   r"got '1 non-finite value")),
    ({"features": X.reshape(20, 2, 2), "k": 3}, (r"the 'features' parameter of diverse_subset must be a 2-D "
                                                 r"array \(n_images, n_features\), got 'array of shape \(20, 2, 2\)'")),
    ({"features": xr.DataArray(np.zeros((2, 2, 2))), "k": 2}, (r"'features' parameter of diverse_subset must "
                                                               r"be a 2-D array")),
    ({"features": np.array([["a", "b"], ["c", "d"]]), "k": 2}, (r"'features' parameter of diverse_subset must "
                                                                r"be a numeric array")),
    ({"features": X[:1], "k": 2}, (r"'features' parameter of diverse_subset must be an array with at least 2 "
                                   r"images")),
    ({"features": np.ones((5, 3)), "k": 2}, (r"'features' parameter of diverse_subset must be features that "
                                             r"vary across images, got '5 identical rows'")),
    ({"features": X, "k": 3, "n_components": 0}, (r"the 'n_components' parameter of diverse_subset must be an "
                                                  r"int >= 1, got 0")),
    ({"features": X, "k": 3, "n_init": 0}, r"the 'n_init' parameter of diverse_subset must be an int >= 1"),
    ({"features": X, "k": 3, "random_state": -1}, r"the 'random_state' parameter of diverse_subset"),
])
def test_diverse_subset_bad_inputs(kwargs, match):
    with pytest.raises(NetphysError, match=match):
        diverse_subset(**kwargs)


@pytest.mark.parametrize("index, kwargs, match", [
    ([0, 0, 1], {}, r"the 'index' parameter of coverage must be distinct image positions, got '1 repeated"),
    ([0, 20], {}, (r"the 'index' parameter of coverage must be positions in \[0, 19\] \(the pool has 20 "
                   r"images\), got 20")),
    ([0.5, 1.0], {}, r"the 'index' parameter of coverage must be a 1-D array of int positions"),
    ([3], {}, r"the 'index' parameter of coverage must be at least 2 image positions, got \[3\]"),
    ([0, 1], {"n_random": 0}, r"the 'n_random' parameter of coverage must be an int >= 1, got 0"),
    ([0, 1], {"n_components": 0}, r"the 'n_components' parameter of coverage must be an int >= 1"),
])
def test_coverage_bad_inputs(index, kwargs, match):
    with pytest.raises(NetphysError, match=match):
        coverage(X, index, **kwargs)


def test_coverage_bad_features():
    with pytest.raises(NetphysError, match=r"the 'features' parameter of coverage must be finite"):
        coverage(X_NAN, [0, 1])


def test_select_diverse_bad_inputs(tiny):
    model, st = tiny
    with pytest.raises(NetphysError, match=r"the 'k' parameter of StimulusSet.select_diverse must be an int in "
                                           r"\[2, 30\], got 31"):
        st.select_diverse(model, k=31)
    with pytest.raises(NetphysError, match=r"StimulusSet.select_diverse names an unknown layer, got 'fc9'"):
        st.select_diverse(model, "fc9", k=3)
    with pytest.raises(NetphysError, match=r"the 'batch_size' parameter of record must be an int >= 1"):
        st.select_diverse(model, k=3, batch_size=0)

"""Encoding models (D3): ridge/lasso per neuron, noise correction, weight maps, Gabor baseline, table."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.base import clone
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from netphys import NetphysError
from netphys.readout import (
    EncodingModel,
    GaborBank,
    encoding_table,
    fit_encoding_models,
)
from netphys.stats import pearson_r
from netphys.stimuli.gratings import grating_images

log = logging.getLogger(__name__)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _linear_data(n=600, n_feat=20, n_neurons=12, snr=1.0, seed=0):
    """Y = X w + noise with var(signal) / var(noise) = snr: the best held-out r is sqrt(snr / (1 + snr))."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_feat)) * rng.uniform(0.5, 3.0, n_feat) + rng.normal(size=n_feat)
    w = rng.normal(size=(n_feat, n_neurons))
    signal = X @ w
    noise = rng.normal(size=signal.shape) * signal.std(axis=0) / np.sqrt(snr)
    return X, signal + noise + 2.0, signal


# ------------------------------------------------------------------------------------------ ridge
def test_ridge_recovers_the_analytic_correlation():
    X, Y, _ = _linear_data(snr=1.0)
    m = EncodingModel(layer="toy").fit(X, Y)
    analytic = np.sqrt(1.0 / 2.0)                        # 0.707
    assert m.r_.dims == ("unit",) and m.r_.sizes["unit"] == 12
    assert abs(float(m.r_.mean()) - analytic) < 0.04
    assert np.all(m.train_r_.values > 0.6)
    assert m.coef_.shape == (12, 20) and m.feature_shape_ == (20,)
    assert np.allclose(m.predict(X), X @ m.coef_.T + m.intercept_)
    assert np.allclose(m.score(X[m.test_index_], Y[m.test_index_]), m.r_)
    assert len(m.test_index_) == 120 and not set(m.test_index_) & set(m.train_index_)


@pytest.mark.parametrize("scale", [False, True])
def test_ridge_equals_sklearn_ridge_at_the_chosen_penalty(scale):
    X, Y, _ = _linear_data(n=200, n_feat=60, snr=0.5, seed=1)
    m = EncodingModel(scale=scale).fit(X, Y)
    tr = m.train_index_
    mx, sx = X[tr].mean(axis=0), (X[tr].std(axis=0) if scale else np.ones(60))
    for j in range(3):
        ref = Ridge(alpha=m.alpha_[j]).fit((X[tr] - mx) / sx, Y[tr, j])
        assert np.allclose(m.coef_[j], ref.coef_ / sx, atol=1e-10)
        assert m.intercept_[j] == pytest.approx(ref.intercept_ - (ref.coef_ / sx) @ mx, abs=1e-9)


def test_penalty_is_chosen_per_neuron():
    X, Y, signal = _linear_data(n=300, n_feat=40, n_neurons=2, seed=2)
    rng = np.random.default_rng(3)
    Y = np.column_stack([signal[:, 0] + 0.01 * rng.normal(size=300) * signal[:, 0].std(),   # nearly noiseless
                         signal[:, 1] + 5.0 * rng.normal(size=300) * signal[:, 1].std()])   # very noisy
    m = EncodingModel(alphas=np.logspace(-3, 5, 17)).fit(X, Y)
    assert m.alpha_[0] < m.alpha_[1]
    assert m.r_.values[0] > 0.99


def test_lasso_on_sparse_truth():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 30))
    Y = X[:, :3] @ np.array([[1.0, 0.0], [2.0, 1.0], [0.0, -1.0]]) + 0.3 * rng.normal(size=(200, 2))
    m = EncodingModel(estimator="lasso", n_alphas=10, eps=1e-3).fit(X, Y)
    assert np.all(m.r_.values > 0.9)
    assert m.alphas_.shape == (2, 10)
    assert np.count_nonzero(np.abs(m.coef_[:, 3:]) > 0.05) < 10


def test_sklearn_protocol():
    m = EncodingModel(layer="conv4_1", estimator="lasso", cv=3)
    c = clone(m)
    assert c.get_params()["layer"] == "conv4_1" and c.get_params()["cv"] == 3
    with pytest.raises(Exception, match="not fitted"):
        m.predict(np.zeros((3, 4)))


# ------------------------------------------------------------------------ maps and the correction
def test_weight_map_and_filter_importance_of_a_hand_built_coef():
    m = EncodingModel()
    coef = np.zeros((2, 3, 4, 5))                         # (neuron, C, H, W)
    coef[0, 0, 1, 2] = 2.0
    coef[0, 2, 1, 2] = -1.0                               # same location: 4 + 1
    coef[0, 1, 3, 4] = 3.0
    coef[1, 2, 0, 0] = 0.5
    m.coef_ = coef.reshape(2, -1)
    m.feature_shape_ = (3, 4, 5)
    wm, fi = m.weight_map_, m.filter_importance_
    assert wm.dims == ("unit", "row", "col") and wm.shape == (2, 4, 5)
    assert wm.values[0, 1, 2] == 5.0 and wm.values[0, 3, 4] == 9.0 and wm.values[0].sum() == 14.0
    assert wm.values[1, 0, 0] == 0.25
    assert fi.dims == ("unit", "channel")
    assert np.array_equal(fi.values, [[4.0, 9.0, 1.0], [0.0, 0.0, 0.25]])
    m.feature_shape_ = (60,)
    with pytest.raises(NetphysError, match="needs features with a spatial layout"):
        _ = m.weight_map_


def test_map_features_fit_and_recover_the_receptive_field():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 4, 6, 6))
    Y = X[:, 1, 2, 3:4] * 2.0 + 0.5 * rng.normal(size=(400, 1))     # one channel at one location
    m = EncodingModel().fit(torch.as_tensor(X, dtype=torch.float32), Y)
    wm = m.weight_map_.values[0]
    assert np.unravel_index(np.argmax(wm), wm.shape) == (2, 3)
    assert int(m.filter_importance_.values[0].argmax()) == 1
    ds = m.to_dataset()
    assert {"r", "train_r", "alpha", "weight_map", "filter_importance"} <= set(ds.data_vars)


def test_noise_corrected_r_on_synthetic_trials():
    """Trials with 6-10 NaN-padded repeats: r_corrected_ estimates the correlation with the noise-free signal."""
    rng = np.random.default_rng(6)
    n, n_neurons, R = 500, 30, 10
    X, _, signal = _linear_data(n=n, n_feat=15, n_neurons=n_neurons, seed=7)
    signal = signal / signal.std(axis=0)
    reps = rng.integers(6, R + 1, n)
    trials = signal[:, :, None] + rng.normal(0, 2.0, (n, n_neurons, R))
    trials[np.broadcast_to(np.arange(R)[None, None, :] >= reps[:, None, None], trials.shape)] = np.nan
    da = xr.DataArray(trials, dims=("stimulus", "unit", "repeat"),
                      coords={"unit_id": ("unit", [f"s/{i}" for i in range(n_neurons)])})
    m = EncodingModel().fit(X, trials=da)
    te = m.test_index_
    truth = pearson_r(m.predict(X[te]), signal[te])        # r with the noise-free response
    assert float(m.r_.mean()) < 0.9 * truth.mean()
    assert abs(float(m.r_corrected_.mean()) - truth.mean()) < 0.03
    assert list(m.r_corrected_.unit_id.values[:2]) == ["s/0", "s/1"]
    ev = m.explainable_variance_.values
    assert np.allclose(m.noise_ceiling_.values, np.sqrt(ev))
    plain = EncodingModel().fit(X, np.nanmean(trials, axis=2))         # the same fit without trials
    assert not hasattr(plain, "r_corrected_")
    again = plain.noise_corrected(trials)
    assert np.allclose(again.values, m.r_corrected_.values) and not hasattr(plain, "r_corrected_")
    ds = m.to_dataset()
    assert {"r_corrected", "explainable_variance", "noise_ceiling"} <= set(ds.data_vars)


# ------------------------------------------------------------------------------------- bad input
def test_bad_input_errors():
    X, Y, _ = _linear_data(n=40, n_feat=5, n_neurons=4)
    with pytest.raises(NetphysError, match=r"'cv' parameter of EncodingModel.fit must be <= the number of "
                                           r"training stimuli \(8 of 10"):
        EncodingModel(cv=9).fit(X[:10], Y[:10])
    Yn = Y.copy()
    Yn[:, 2] = np.nan
    Yn[5, 0] = np.nan
    with pytest.raises(NetphysError, match=r"'Y' parameter of EncodingModel.fit must be finite.*neuron\(s\) "
                                           r"0, 2 \(all NaN\)"):
        EncodingModel().fit(X, Yn)
    trials = np.repeat(Y[:, :, None], 3, axis=2)
    trials[:, 1] = np.nan
    with pytest.raises(NetphysError, match=r"all-NaN neuron\(s\) at unit index 1"):
        EncodingModel().fit(X, Y, trials=trials)
    with pytest.raises(NetphysError, match="'estimator' parameter"):
        EncodingModel(estimator="pls").fit(X, Y)
    with pytest.raises(NetphysError, match="'alphas' parameter"):
        EncodingModel(alphas=[1.0, -1.0]).fit(X, Y)
    with pytest.raises(NetphysError, match="'Y' parameter of EncodingModel.fit must be one row per stimulus"):
        EncodingModel().fit(X, Y[:-1])
    m = EncodingModel().fit(X, Y)
    with pytest.raises(NetphysError, match="'X' parameter of EncodingModel.predict"):
        m.predict(X[:, :3])


def test_fit_encoding_models_checks_before_running_the_network():
    bank = GaborBank(orientations=2, frequencies=(4,), size=16, grid=2)
    images = np.random.default_rng(8).integers(0, 255, (12, 20, 20, 3), dtype=np.uint8)
    responses = np.random.default_rng(9).normal(size=(12, 3))
    with pytest.raises(NetphysError, match="'cv' parameter of fit_encoding_models"):
        fit_encoding_models(bank, None, images, responses, encoder=EncodingModel(cv=10))
    bad = responses.copy()
    bad[:, 1] = np.nan
    with pytest.raises(NetphysError, match=r"'responses' parameter of fit_encoding_models must be finite.*"
                                           r"neuron\(s\) 1 \(all NaN\)"):
        fit_encoding_models(bank, None, images, bad)
    trials = np.repeat(responses[:, :, None], 4, axis=2)
    trials[:, 2] = np.nan
    with pytest.raises(NetphysError, match=r"all-NaN neuron\(s\) at unit index 2"):
        fit_encoding_models(bank, None, images, trials)
    with pytest.raises(NetphysError, match="'responses' parameter of fit_encoding_models must be one row per"):
        fit_encoding_models(bank, None, images, responses[:5])


# ------------------------------------------------------------------------------------------ Gabor
@pytest.mark.parametrize("mode", ["rectified", "energy"])
def test_gabor_grating_drives_the_matching_orientation(mode):
    bank = GaborBank(orientations=8, frequencies=(4, 8), size=32, grid=2, mode=mode)
    oris = np.arange(8) * 22.5
    imgs = grating_images(oris, [0, 90], [8], 32)[:, :, 0]           # (orientation, phase, 32, 32)
    f = bank.transform(imgs.reshape(-1, 32, 32))
    assert f.dims == ("stimulus", "channel", "row", "col") and f.sizes["channel"] == bank.n_channels
    per_ori = f.mean(("row", "col")).groupby("orientation").mean("channel").values   # (stimulus, orientation)
    per_ori = per_ori.reshape(8, 2, 8).mean(axis=1)
    assert np.array_equal(per_ori.argmax(axis=1), np.arange(8))
    assert np.all(per_ori.max(axis=1) > 2 * per_ori.min(axis=1))


def test_gabor_bank_layout_and_errors():
    bank = GaborBank(orientations=[0, 90], frequencies=(2, 4, 8), phases=(0, 180), size=24, grid=3)
    assert bank.n_channels == 12 and list(bank.channels.columns[:3]) == ["orientation", "sf", "phase"]
    assert list(bank.channels.orientation[:6]) == [0.0] * 6 and list(bank.channels.phase[:2]) == [0.0, 180.0]
    out = bank(torch.rand(2, 3, 40, 40))
    assert out.shape == (2, 12, 3, 3) and torch.all(out >= 0)
    linear = GaborBank(orientations=[0, 90], frequencies=(2, 4, 8), size=24, grid=3, nonlinearity=None)
    assert torch.allclose(linear(torch.full((1, 3, 24, 24), 0.7)), torch.zeros(1, 24, 3, 3), atol=1e-5)
    with pytest.raises(NetphysError, match="'frequencies' parameter of GaborBank"):
        GaborBank(frequencies=(40,), size=64)
    with pytest.raises(NetphysError, match="'mode' parameter of GaborBank"):
        GaborBank(mode="complex")


def test_encoding_table():
    X, Y, _ = _linear_data(n=120, n_feat=8, n_neurons=5)
    a = EncodingModel(layer="conv1").fit(X, Y).to_dataset().assign_attrs(model="netA")
    b = EncodingModel(layer="conv2").fit(X * 2, Y).to_dataset().assign_attrs(model="netA")
    tab = encoding_table([a, b])
    assert list(tab.index) == [("netA", "conv1", "ridge"), ("netA", "conv2", "ridge")]
    assert tab.loc[("netA", "conv1", "ridge"), "median_r"] == pytest.approx(float(np.median(a.r)))
    assert tab["n_neurons"].tolist() == [5, 5] and tab["median_r_corrected"].isna().all()
    with pytest.raises(NetphysError, match="one result per"):
        encoding_table([a, a])


# ------------------------------------------------------------------------------- real data (V4)
def _cowley():
    from netphys.neural import default_shared_root

    root = default_shared_root()
    if root is None or not (root / "cowley-v4" / "responses_raw" / "responses_210325.npy").is_file():
        pytest.skip("needs shared/data/cowley-v4 with responses_raw/responses_210325.npy")
    from netphys.neural import load_cowley_v4

    return load_cowley_v4(root, sessions=["210325"], repeats=True)["210325"]


def test_cowley_v4_session_210325_netphys_vgg16_conv4_1():
    from netphys.models import load_model

    ds = _cowley()
    trials = ds.responses("V4", average_repeats=False)                # (640, 50, 10), 6-10 repeats
    model = load_model("netphys_vgg16")
    res = fit_encoding_models(model, "conv4_1", ds.images, trials)
    r, rc = res["r"].values, res["r_corrected"].values
    med_r, med_rc = float(np.nanmedian(r)), float(np.nanmedian(rc))
    log.info("Cowley 210325, netphys_vgg16 conv4_1: median r %.3f, median corrected r %.3f", med_r, med_rc)
    assert res.sizes["unit"] == 50 and res.attrs["model"] == "netphys_vgg16" and res.attrs["layer"] == "conv4_1"
    assert res["weight_map"].shape == (50, 8, 8) and res["filter_importance"].shape == (50, 128)
    assert list(res.unit_id.values[:1]) == ["210325/000"]
    assert 0.3 < med_r < 0.7 and med_r < med_rc < 0.9                 # measured: 0.48 and 0.57
    assert np.all(res["explainable_variance"].values <= 1)
    tab = encoding_table([res])
    assert tab.loc[("netphys_vgg16", "conv4_1", "ridge"), "median_r"] == pytest.approx(med_r)


# ------------------------------------------------------------------------------ other networks
@pytest.mark.parametrize("name, weights, layer", [("hed_vgg16", "random", "conv3_1"),
                                                  ("efficientnet_lite0", "random", "block10_expand")])
def test_layer_features_pooled_on_the_224px_networks(name, weights, layer):
    """The encoding features of hed VGG-16 and EfficientNet-Lite0 (224 px, Cowley's 112 px images resized):
    a grid-pooled layer equals the native recording average-pooled by hand, chunked or not."""
    from netphys.models import load_model

    from netphys.readout.encoding import layer_features

    model = load_model(name, weights=weights, random_state=0)
    images = np.random.default_rng(5).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    native = layer_features(model, layer, images, batch_size=2)
    assert native.dims == ("stimulus", "channel", "row", "col") and native.sizes["row"] >= 14
    pooled = layer_features(model, layer, images, grid=7, batch_size=2)
    assert pooled.shape == (3, native.sizes["channel"], 7, 7)
    ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(native.values), 7).numpy()
    np.testing.assert_allclose(pooled.values, ref, rtol=1e-4, atol=1e-5)
    assert (native.values >= 0).all()   # post-activation (ReLU / ReLU6) features

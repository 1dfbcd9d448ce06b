"""Pearson r, explainable variance and the noise correction (D3), on data with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from threadpoolctl import threadpool_limits

from netphys import NetphysError, NetphysWarning
from netphys.stats import (
    explainable_variance,
    noise_ceiling_r,
    noise_corrected_r,
    pearson_r,
    variance_components,
)


@pytest.fixture(autouse=True)
def _one_thread():
    with threadpool_limits(1):
        yield


def _synthetic(n_stim=200, n_units=300, signal_var=1.0, noise_var=4.0, repeats=(6, 10), seed=0,
               per_unit_repeats=True, hetero=False):
    """Trials = signal(stimulus) + Gaussian noise, NaN-padded to max repeats (6-10 per stimulus)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, np.sqrt(signal_var), (n_stim, n_units)) + 5.0
    R = repeats[1]
    shape = (n_stim, n_units) if per_unit_repeats else (n_stim, 1)
    n = np.broadcast_to(rng.integers(repeats[0], repeats[1] + 1, shape), (n_stim, n_units))
    sd = np.sqrt(noise_var) * (rng.uniform(0.5, 1.5, (n_stim, 1)) if hetero else 1.0)
    t = mu[:, :, None] + rng.normal(0.0, 1.0, (n_stim, n_units, R)) * np.asarray(sd)[..., None]
    t[np.arange(R)[None, None, :] >= n[:, :, None]] = np.nan
    noise_i = np.broadcast_to(np.asarray(sd) ** 2, (n_stim, n_units))
    return t, mu, n, noise_i


# ------------------------------------------------------------------------------------------ pearson_r
def test_pearson_r_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 7))
    y = x * rng.uniform(0, 2, 7) + rng.normal(size=(50, 7))
    r = pearson_r(x, y)
    assert r.shape == (7,)
    for j in range(7):
        assert r[j] == pytest.approx(stats.pearsonr(x[:, j], y[:, j])[0], abs=1e-12)
    assert np.allclose(pearson_r(x.T, y.T, axis=1), r)
    # broadcasting one prediction against many columns
    assert pearson_r(x[:, 0], x[:, 0]) == pytest.approx(1.0)


def test_pearson_r_constant_is_nan_and_bad_shapes():
    x = np.ones((10, 2))
    x[:, 1] = np.arange(10)
    r = pearson_r(x, np.arange(10.0)[:, None])
    assert np.isnan(r[0]) and r[1] == pytest.approx(1.0)
    with pytest.raises(NetphysError, match="'y' parameter of pearson_r must be an array that broadcasts"):
        pearson_r(np.ones((5, 2)), np.ones((4, 2)))
    with pytest.raises(NetphysError, match="'x' parameter of pearson_r must be at least 2 observations"):
        pearson_r(np.ones((1, 3)), np.ones((1, 3)))


# ---------------------------------------------------------------- explainable variance: known SNR
def test_explainable_variance_matches_analytic_value_with_unequal_repeats():
    signal_var, noise_var = 1.0, 4.0
    t, _, n, _ = _synthetic(signal_var=signal_var, noise_var=noise_var)
    assert np.isnan(t).any() and set(np.unique(n)) == set(range(6, 11))
    ev = explainable_variance(t)
    # per neuron: signal / (signal + mean over stimuli of noise / n_i)
    analytic = signal_var / (signal_var + noise_var * (1.0 / n).mean(axis=0))
    assert ev.shape == (300,)
    assert abs(ev.mean() - analytic.mean()) < 0.01
    assert np.corrcoef(ev, analytic)[0, 1] > 0  # per-neuron repeat counts move it the right way
    ev_trial = explainable_variance(t, of="trial")
    assert abs(ev_trial.mean() - signal_var / (signal_var + noise_var)) < 0.01
    comp = variance_components(t)
    assert abs(float(comp.signal_var.mean()) - signal_var) < 0.03
    assert abs(float(comp.noise_var.mean()) - noise_var) < 0.03


def test_signal_variance_unbiased_with_stimulus_dependent_noise():
    """Per-stimulus noise estimates: unbiased even when the noise variance differs between stimuli."""
    t, mu, n, noise_i = _synthetic(hetero=True, noise_var=3.0, seed=3)
    comp = variance_components(t)
    true_signal = mu.var(axis=0, ddof=1)
    assert abs(float((comp.signal_var - true_signal).mean())) < 0.02
    expect = (noise_i / n).mean(axis=0)
    assert abs(float(comp.noise_var_of_mean.mean()) - expect.mean()) < 0.01


def test_noise_corrected_r_of_the_true_signal_is_one():
    t, mu, _, _ = _synthetic(seed=2)
    ybar = np.nanmean(t, axis=2)
    r = pearson_r(mu, ybar)
    assert 0.7 < r.mean() < 0.9                         # the raw r of a perfect model is well below 1
    rc = noise_corrected_r(r, t)
    assert 0.98 < rc.mean() < 1.02                      # brief: within [0.95, 1.05]
    assert abs(np.median(rc) - 1.0) < 0.02
    # the noise ceiling is the expected raw r of the perfect model
    assert abs(noise_ceiling_r(t).mean() - r.mean()) < 0.01


def test_noise_corrected_r_recovers_a_known_model_correlation():
    t, mu, _, _ = _synthetic(seed=4)
    rng = np.random.default_rng(5)
    rho = 0.6                                           # corr(prediction, signal) by construction
    pred = mu + rng.normal(0.0, np.sqrt(1.0 / rho ** 2 - 1.0), mu.shape)
    truth = pearson_r(pred, mu)
    rc = noise_corrected_r(pearson_r(pred, np.nanmean(t, axis=2)), t)
    assert abs(rc.mean() - truth.mean()) < 0.02
    assert abs(rc.mean() - rho) < 0.03


def test_missing_stimuli_and_single_repeats():
    t, _, _, _ = _synthetic(n_units=5, seed=6)
    # a stimulus with no trial for a neuron is left out for that neuron
    t2 = np.concatenate([t, np.full((3, 5, t.shape[2]), np.nan)])
    assert np.allclose(explainable_variance(t2), explainable_variance(t))
    # a stimulus shown once enters the mean's variance with the pooled noise estimate
    t3 = t.copy()
    t3[:20, :, 1:] = np.nan
    ev3 = explainable_variance(t3)
    assert np.all(np.isfinite(ev3))
    assert int(variance_components(t3).n_stimuli_noise[0]) == 180


def test_labelled_input_gives_labelled_output():
    t, mu, _, _ = _synthetic(n_units=4, seed=7)
    da = xr.DataArray(np.transpose(t, (1, 0, 2)), dims=("unit", "stimulus", "repeat"),
                      coords={"unit": [10, 11, 12, 13], "unit_id": ("unit", list("abcd"))})
    ev = explainable_variance(da)
    assert ev.dims == ("unit",) and list(ev.unit_id.values) == list("abcd")
    assert np.allclose(ev.values, explainable_variance(t))
    rc = noise_corrected_r(pearson_r(mu, np.nanmean(t, axis=2)), da)
    assert isinstance(rc, xr.DataArray) and list(rc.unit.values) == [10, 11, 12, 13]


# --------------------------------------------------------------------------------------- bad input
def test_all_nan_neuron_is_named():
    t, _, _, _ = _synthetic(n_units=6, seed=8)
    t[:, 3] = np.nan
    for f in (explainable_variance, noise_ceiling_r, variance_components):
        with pytest.raises(NetphysError, match=r"all-NaN neuron\(s\) at unit index 3"):
            f(t)
    with pytest.raises(NetphysError, match="unit index 3"):
        noise_corrected_r(np.zeros(6), t)


def test_no_repeats_and_shape_errors():
    t, _, _, _ = _synthetic(n_units=3, seed=9)
    single = t[:, :, :1]
    with pytest.raises(NetphysError, match=">= 2 repeats .*unit index 0, 1, 2"):
        explainable_variance(single)
    with pytest.raises(NetphysError, match="'trials' parameter of explainable_variance must be a non-empty 3-D"):
        explainable_variance(t[:, :, 0])
    with pytest.raises(NetphysError, match="'r' parameter of noise_corrected_r must be one correlation per unit"):
        noise_corrected_r(np.zeros(4), t)
    with pytest.raises(NetphysError, match="'of' parameter"):
        explainable_variance(t, of="single")


def test_no_signal_gives_nan_with_warning():
    rng = np.random.default_rng(10)
    t = rng.normal(size=(100, 4, 8))                    # pure noise: signal variance ~0, often < 0
    t[:, 0] += rng.normal(0, 2, (100, 1))               # one real neuron
    r = np.full(4, 0.3)
    ev = explainable_variance(t)
    assert ev[0] > 0.8 and (ev[1:] <= 0).sum() == 2     # this seed: two noise neurons estimate < 0
    with pytest.warns(NetphysWarning, match=r"2 neuron\(s\) have an estimated signal variance <= 0"):
        rc = noise_corrected_r(r, t)
    assert np.isnan(rc[ev <= 0]).all() and np.isfinite(rc[ev > 0]).all()
    assert np.isfinite(noise_corrected_r(r[:1], t[:, :1]))[0]

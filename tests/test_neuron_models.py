"""Neuron models (C4): PLS / Lasso read-outs, sign consistency, weight balance -- known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.stats import binomtest
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from torch import nn

from netphys._validation import NetphysError, NetphysWarning
from netphys.readout import (
    LassoNeuronModels,
    PLSNeuronModels,
    sign_consistency,
    weight_balance,
)


def _signed_sparse(n=400, n_feat=20, n_neurons=6, noise=0.5, positive=False, seed=0):
    """Y = X @ W.T + noise with W sparse (3 non-zeros per neuron, |w| in [1, 2]); returns X, Y, W."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_feat)) * rng.uniform(0.5, 3.0, n_feat) + rng.normal(size=n_feat)
    W = np.zeros((n_neurons, n_feat))
    for j in range(n_neurons):
        idx = rng.choice(n_feat, 3, replace=False)
        W[j, idx] = rng.uniform(1.0, 2.0, 3) * (1 if positive else rng.choice([-1, 1], 3))
    W = W / X.std(axis=0)  # comparable contributions of all features
    Y = X @ W.T + 1.0 + noise * rng.normal(size=(n, n_neurons))
    return X, Y, W


# ------------------------------------------------------------------------------------------------ PLS
@pytest.mark.parametrize("scale", [True, False])
def test_pls_closed_form_equals_sklearn_per_neuron(scale):
    X, Y, _ = _signed_sparse(n=150, n_feat=30, noise=2.0)
    X[:, 4] = 3.0  # a constant feature: weight 0 (scikit-learn sets its SD to 1)
    m = PLSNeuronModels(scale=scale).fit(X, Y)
    tr = m.train_index_
    for j in range(Y.shape[1]):
        ref = PLSRegression(n_components=1, scale=scale).fit(X[tr], Y[tr, j])
        np.testing.assert_allclose(m.coef_[j], ref.coef_[0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(m.predict(X)[:, j], ref.predict(X).ravel(), rtol=0, atol=1e-6)
    assert np.all(m.coef_[:, 4] == 0)
    # the intercept is the original-units one: prediction = X @ coef_.T + intercept_
    np.testing.assert_allclose(m.predict(X), X @ m.coef_.T + m.intercept_)


def test_pls_more_components_loop_over_sklearn():
    X, Y, _ = _signed_sparse(n=120, n_feat=15, n_neurons=3, noise=1.0)
    m = PLSNeuronModels(n_components=3, random_state=4).fit(X, Y)
    tr = m.train_index_
    for j in range(Y.shape[1]):
        ref = PLSRegression(n_components=3).fit(X[tr], Y[tr, j])
        np.testing.assert_allclose(m.predict(X)[:, j], ref.predict(X).ravel(), rtol=0, atol=1e-6)
    assert m.score_.shape == (3,) and np.all(m.score_ > 0.5)


def test_pls_held_out_r2_matches_the_signal_to_noise_ratio():
    # isotropic features: the PLS1 direction X^T y is the true w, so r^2 -> SNR / (1 + SNR)
    rng = np.random.default_rng(1)
    n, n_feat, snr = 40_000, 8, np.array([0.25, 1.0, 4.0])
    X = rng.normal(size=(n, n_feat))
    w = rng.normal(size=(3, n_feat))
    w /= np.linalg.norm(w, axis=1, keepdims=True)  # signal variance 1
    Y = X @ w.T + rng.normal(size=(n, 3)) / np.sqrt(snr)
    m = PLSNeuronModels().fit(X, Y)
    np.testing.assert_allclose(m.score_.values, snr / (1 + snr), atol=0.02)  # SE of r^2 ~0.008 here
    assert m.score_.attrs["n_test"] == 8000 and m.score_.attrs["n_train"] == 32_000


def test_split_is_seeded_and_shared():
    X, Y, _ = _signed_sparse(n=50)
    a, b = PLSNeuronModels(random_state=3).fit(X, Y), PLSNeuronModels(random_state=3).fit(X, Y)
    np.testing.assert_array_equal(a.test_index_, b.test_index_)
    assert len(a.test_index_) == 10 and len(a.train_index_) == 40
    assert not np.array_equal(a.test_index_, PLSNeuronModels(random_state=4).fit(X, Y).test_index_)
    assert np.intersect1d(a.train_index_, a.test_index_).size == 0
    assert clone(a).get_params() == a.get_params() and not hasattr(clone(a), "coef_")


def test_labelled_inputs_and_outputs():
    X, Y, _ = _signed_sparse(n=60, n_neurons=3)
    Yda = xr.DataArray(Y, dims=("stimulus", "unit"),
                       coords={"unit": [10, 11, 12], "unit_id": ("unit", ["s/0", "s/1", "s/2"])})
    Xda = xr.DataArray(X.T, dims=("unit", "stimulus"))  # transposed: put stimulus first by name
    m = PLSNeuronModels().fit(Xda, Yda.T)
    np.testing.assert_array_equal(m.coef_, PLSNeuronModels().fit(X, Y).coef_)
    assert m.score_.dims == ("unit",) and list(m.score_["unit_id"].values) == ["s/0", "s/1", "s/2"]
    assert m.r2_ is m.score_ and m.train_score_.attrs["split"] == "train"
    pred = m.predict(Xda)
    assert pred.dims == ("stimulus", "unit") and list(pred["unit"].values) == [10, 11, 12]
    np.testing.assert_allclose(m.score(X[m.test_index_], Y[m.test_index_]).values, m.score_.values)
    single = PLSNeuronModels().fit(X, Y[:, 0])  # one neuron as a vector
    assert single.coef_.shape == (1, X.shape[1])


def test_constant_neuron_warns_and_gives_nan():
    X, Y, _ = _signed_sparse(n=80, n_neurons=3)
    Y[:, 1] = 2.5
    for est in (PLSNeuronModels(), LassoNeuronModels(n_alphas=10)):
        with pytest.warns(NetphysWarning, match=r"1 neuron\(s\) have constant responses .*columns 1\)"):
            m = est.fit(X, Y)
        assert np.isnan(m.score_.values[1]) and np.all(np.isfinite(m.score_.values[[0, 2]]))
        assert np.all(m.coef_[1] == 0) and m.intercept_[1] == pytest.approx(2.5)


# ---------------------------------------------------------------------------------------------- Lasso
def test_lasso_positive_recovers_a_positive_support():
    X, Y, W = _signed_sparse(n=300, positive=True, noise=1.0)
    m = LassoNeuronModels(positive=True).fit(X, Y)
    assert np.all(m.coef_ >= 0)
    for j in range(W.shape[0]):
        true = set(np.flatnonzero(W[j]))
        assert true <= set(np.flatnonzero(m.coef_[j]))          # the support is found
        assert set(np.argsort(m.coef_[j])[-3:]) == true          # and carries the largest weights
        np.testing.assert_allclose(m.coef_[j][list(true)], W[j][list(true)], rtol=0.3)
    assert np.all(m.score_ > 0.7) and np.all(m.n_nonzero_ >= 3)
    assert np.all(np.isfinite(m.alpha_)) and m.alphas_.shape == (W.shape[0], 100)
    np.testing.assert_allclose(m.predict(X), X @ m.coef_.T + m.intercept_)
    # nearly noiseless: CV wants less penalty than the grid offers, and says so
    X, Y, W = _signed_sparse(n=300, positive=True, noise=0.3)
    with pytest.warns(NetphysWarning, match=r"CV optimum is the smallest penalty of the grid"):
        LassoNeuronModels(positive=True).fit(X, Y)


def test_lasso_negative_weights_improve_signed_neurons():
    X, Y, W = _signed_sparse(n=300, noise=0.3, seed=2)
    free = LassoNeuronModels(score_path=True).fit(X, Y)
    pos = LassoNeuronModels(positive=True).fit(X, Y)
    assert np.all(np.sign(free.coef_[W != 0]) == np.sign(W[W != 0]))  # the signs of W are recovered
    assert np.all(pos.coef_ >= 0) and np.all(free.score_ > pos.score_)
    # the path's score at the chosen penalty is the model's held-out score
    at = np.array([np.argmin(np.abs(a - b)) for a, b in zip(free.alphas_, free.alpha_)])
    np.testing.assert_allclose(free.path_test_score_.values[np.arange(len(at)), at], free.score_.values,
                               atol=1e-3)
    assert free.path_train_score_.dims == ("unit", "penalty") and "alpha" in free.path_test_score_.coords


def test_lasso_shared_alpha_grid():
    X, Y, _ = _signed_sparse(n=100, n_neurons=2)
    grid = [0.5, 0.05, 0.005]
    m = LassoNeuronModels(alphas=grid, cv=3).fit(X, Y)
    np.testing.assert_allclose(m.alphas_, [grid, grid])
    assert set(m.alpha_) <= set(grid)


# ------------------------------------------------------------------------------- sign consistency
def test_sign_consistency_flags_the_constructed_features():
    rng = np.random.default_rng(0)
    n = 50
    W = np.zeros((n, 6))
    W[:, 0] = np.abs(rng.normal(size=n)) + 0.1              # always positive
    W[:, 1] = rng.normal(size=n)                            # random sign
    W[:, 2] = -np.abs(rng.normal(size=n)) - 0.1
    W[:3, 2] *= -1                                           # 47/50 negative (94%)
    W[:3, 3] = 1.0                                           # 3/3 positive among non-zero: not significant
    W[:, 4] = 1.0
    W[:5, 4] = -1.0                                          # 45/50 = 90%: not *more* than 90%
    df = sign_consistency(W)
    assert list(df["consistent"]) == [True, False, True, False, False, False]
    assert list(df["sign"]) == [1, int(np.sign((W[:, 1] > 0).sum() - (W[:, 1] < 0).sum())), -1, 1, 1, 0]
    assert list(df["n_nonzero"]) == [50, 50, 50, 3, 50, 0]
    assert df.loc[2, "n_negative"] == 47 and df.loc[2, "fraction_consistent"] == pytest.approx(0.94)
    for f in range(5):
        k = max(df.loc[f, "n_positive"], df.loc[f, "n_negative"])
        p = binomtest(int(k), int(df.loc[f, "n_nonzero"]), 0.5).pvalue
        assert df.loc[f, "p_value"] == pytest.approx(p, rel=1e-12)
        assert df.loc[f, "p_bonferroni"] == pytest.approx(min(1.0, 6 * p), rel=1e-12)
    assert np.isnan(df.loc[5, "fraction_consistent"]) and df.loc[5, "p_value"] == 1.0
    assert df.index.name == "feature"
    assert not sign_consistency(W, alpha=1e-20)["consistent"].any()


# ------------------------------------------------------------------------------- weight balance
def test_weight_balance_hand_built():
    W = np.array([[1.0, 2.0, -1.5], [1.0, 0.0, 0.0], [-1.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    r = weight_balance(W)
    assert r.dims == ("unit",)
    np.testing.assert_array_equal(r.values, [2.0, np.inf, 0.0, np.nan])
    lin = nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(W))
    np.testing.assert_array_equal(weight_balance(lin).values, r.values)


# --------------------------------------------------------------------------------- torch export
def test_as_linear_is_a_plain_linear_that_predicts_the_same():
    X, Y, _ = _signed_sparse(n=80)
    for m in (PLSNeuronModels().fit(X, Y), LassoNeuronModels(n_alphas=10).fit(X, Y)):
        lin = m.as_linear()
        assert type(lin) is nn.Linear and lin.in_features == X.shape[1] and lin.out_features == Y.shape[1]
        with torch.no_grad():
            out = lin(torch.as_tensor(X, dtype=torch.float32)).numpy()
        np.testing.assert_allclose(out, m.predict(X), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(weight_balance(lin).values, weight_balance(m).values, rtol=1e-5)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(6, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


def test_works_as_the_predictor_of_neural_model():
    from netphys.models import load_model
    from netphys.synthesis.objectives import NeuralModel

    model = load_model(_Tiny(), "user", preprocess={"mean": [0.5] * 3, "std": [0.25] * 3}, input_size=8)
    images = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = torch.relu(model.conv((images - 0.5) / 0.25)).mean(dim=(2, 3)).numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    Y = feats @ rng.normal(size=(6, 3)) + 0.1 * rng.normal(size=(40, 3))
    fit = PLSNeuronModels().fit(feats, Y)
    for predictor in (fit, fit.as_linear()):
        obj = NeuralModel(model, "conv", predictor, features="channel_mean")
        with torch.no_grad():
            np.testing.assert_allclose(obj(images).numpy(), fit.predict(feats), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    X, Y, _ = _signed_sparse(n=40, n_neurons=2)
    bad_Y = Y.copy()
    bad_Y[3, 1] = np.nan
    with pytest.raises(NetphysError, match=r"the 'Y' parameter of PLSNeuronModels.fit must be finite "
                                           r"\(no NaN or inf\), got '1 non-finite value.*dropna"):
        PLSNeuronModels().fit(X, bad_Y)
    bad_X = X.copy()
    bad_X[0, 0] = np.inf
    with pytest.raises(NetphysError, match=r"the 'X' parameter of LassoNeuronModels.fit must be finite"):
        LassoNeuronModels().fit(bad_X, Y)
    with pytest.raises(NetphysError, match=r"'Y' parameter of PLSNeuronModels.fit must be an array with "
                                           r"one row per stimulus of X \(40\), got '39 rows"):
        PLSNeuronModels().fit(X, Y[:-1])
    with pytest.raises(NetphysError, match=r"enough stimuli for the split .* got '5 stimuli \(4 train / 1 test\)"):
        PLSNeuronModels().fit(X[:5], Y[:5])
    with pytest.raises(NetphysError, match=r"2 per fold of 5-fold CV.* got '12 stimuli \(9 train / 3 test\)"):
        LassoNeuronModels().fit(X[:12], Y[:12])
    with pytest.raises(NetphysError, match=r"'test_size' parameter of PLSNeuronModels.fit must be a number "
                                           r"in \(0, 1\), got 20"):
        PLSNeuronModels(test_size=20).fit(X, Y)
    with pytest.raises(NetphysError, match=r"'n_components' parameter .* must be <= the number of features"):
        PLSNeuronModels(n_components=21).fit(X, Y)
    with pytest.raises(NetphysError, match=r"'alphas' parameter of LassoNeuronModels.fit"):
        LassoNeuronModels(alphas=[0.1, -1]).fit(X, Y)
    with pytest.raises(NetphysError, match=r"'X' parameter of PLSNeuronModels.predict must be an array "
                                           r"with 20 features"):
        PLSNeuronModels().fit(X, Y).predict(X[:, :5])
    with pytest.raises(NetphysError, match=r"'threshold' parameter of sign_consistency must be a number"):
        sign_consistency(np.ones((3, 2)), threshold=90)
    with pytest.raises(NetphysError, match=r"'coef' parameter of weight_balance must be finite"):
        weight_balance(np.array([[1.0, np.nan]]))


# ----------------------------------------------------------------------------------- real data
def _cowley_root():
    from netphys.neural import default_shared_root

    root = default_shared_root()
    return root if root is not None and (root / "cowley-v4").is_dir() else None


@pytest.mark.shared
@pytest.mark.skipif(_cowley_root() is None, reason="shared data 'cowley-v4' not available")
def test_real_v4_neurons_predicted_from_the_default_network():
    from PIL import Image

    from netphys.models import load_model, model_info
    from netphys.neural import load_cowley_v4
    from netphys.recording import record
    from netphys.stimuli import StimulusSet
    from netphys.synthesis.objectives import NeuralModel

    session = "210305"  # 400 images, 70 V4 units: the smallest session
    ds = load_cowley_v4(_cowley_root(), sessions=[session])[session]
    model = load_model("netphys_vgg16")
    pre = model_info(model).preprocess                       # 112 px -> the network's 64 px
    images = np.stack([pre.geometry(Image.fromarray(a)) for a in ds.images])
    stim = StimulusSet.from_arrays(images, preprocess=pre, name=f"cowley-v4/{session}")
    feats = record(model, stim, layers=["fc7"], units="all", site="post")   # penultimate layer, ReLU
    fit = PLSNeuronModels().fit(feats, ds.responses("V4"))
    assert fit.coef_.shape == (70, 256)
    assert float(fit.score_.median()) > 0          # measured: 0.094 (seed 0), 0.092 / 0.103 (seeds 1, 2)
    assert list(fit.score_["unit_id"].values[:2]) == [f"{session}/000", f"{session}/001"]
    obj = NeuralModel(model, "fc7", fit, site="post")      # the fitted models drive feature visualisation
    x = torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        np.testing.assert_allclose(obj(x).numpy(), fit.predict(feats.values[:4]), rtol=1e-3, atol=1e-3)

"""Tests of netphys.stats.dimension (TwoNN, ID vs population size, power-law fit)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from netphys._validation import NetphysError
from netphys.stats.dimension import (
    DuplicatePointsWarning,
    PowerLawFit,
    TwoNN,
    _two_nn_euclidean,
    fit_power_law,
    id_vs_population,
    power_law,
)


# ----------------------------------------------------------------------------------- helpers
def _brute_two_nn(X):
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    two = np.sort(D, axis=1)[:, :2]
    return two[:, 0], two[:, 1]


def _torus_distances(X):
    diff = np.abs(X[:, None, :] - X[None, :, :])
    diff = np.minimum(diff, 1.0 - diff)
    return np.sqrt((diff**2).sum(-1))


def reference_datasets():
    """Data sets whose DADApy IDs are pinned below (numpy Generator streams, same on numpy 1.26 and 2.x)."""
    out = {}
    rng = np.random.default_rng(20240501)
    out["cube5"] = rng.random((1000, 5))
    rng = np.random.default_rng(20240502)
    Z = rng.standard_normal((800, 4))
    Q, _ = np.linalg.qr(rng.standard_normal((30, 4)))
    out["subspace4_in30"] = Z @ Q.T + 1e-3 * rng.standard_normal((800, 30))
    rng = np.random.default_rng(20240503)
    V = rng.standard_normal((1200, 3))
    out["sphere2"] = V / np.linalg.norm(V, axis=1, keepdims=True)
    rng = np.random.default_rng(20240504)
    t = rng.random((600, 2)) * np.array([3 * np.pi, 10.0])
    phi = 1.5 * np.pi + t[:, 0]
    out["swiss2_in3"] = np.column_stack([phi * np.cos(phi), t[:, 1], phi * np.sin(phi)])
    return out


# DADApy 0.3.4, Data(X).compute_id_2NN() (mu_fraction=0.9) and compute_id_2NN(mu_fraction=0.7),
# computed once (numpy 1.26.4, in a separate environment: dadapy pins numpy<2).
# scikit-dimension 0.5.0 TwoNN() gives the same values to 1e-11.
DADAPY_2NN = {
    "cube5": (4.3398342660608415, 4.278978544852939),
    "subspace4_in30": (4.157493206128952, 4.125926811694628),
    "sphere2": (1.9558388773360433, 1.9660719462602345),
    "swiss2_in3": (2.0914292430206674, 2.1633396409200256),
}


# ------------------------------------------------------------------------ nearest neighbours
@pytest.mark.parametrize("n,d", [(3, 2), (7, 5), (400, 3), (300, 60), (120, 4096)])
def test_two_nn_search_is_exact(n, d):
    X = np.random.default_rng(n + d).standard_normal((n, d))
    # tiny blocks to exercise the chunking
    r1, r2 = _two_nn_euclidean(X, block_bytes=4 * n * 13)
    b1, b2 = _brute_two_nn(X)
    np.testing.assert_allclose(r1, b1, rtol=1e-12)
    np.testing.assert_allclose(r2, b2, rtol=1e-12)


def test_two_nn_search_exact_when_norm_trick_fails():
    # neighbour distances ~1e-4 for points ~1e3 from the mean: the ||x||^2 - 2 x.y trick cancels in
    # float32 and float64 (scikit-learn returns zeros); the certified search falls back to differences
    rng = np.random.default_rng(0)
    X = np.hstack([rng.random((200, 2)) * 1e-4, np.zeros((200, 40))])
    X[:100] += 1e3
    r1, r2 = _two_nn_euclidean(X)
    b1, b2 = _brute_two_nn(X)
    np.testing.assert_allclose(r1, b1, rtol=1e-9)
    np.testing.assert_allclose(r2, b2, rtol=1e-9)
    assert TwoNN().fit(X).dimension_ == pytest.approx(TwoNN().fit(X[:100] - 1e3).dimension_, rel=0.3)


# ---------------------------------------------------------------------------- known manifolds
def test_uniform_hypercubes():
    # TwoNN underestimates on hypercubes because of the boundary (points near a face see fewer
    # neighbours); the bias grows with d (about -14% at d = 10, N = 4000; Facco et al. 2017, Fig. 2)
    ests = []
    for d in range(2, 11):
        X = np.random.default_rng(1000 + d).random((4000, d))
        est = TwoNN().fit(X).dimension_
        ests.append(est)
        if d <= 4:
            assert abs(est / d - 1) < 0.07, (d, est)
        else:
            assert 0.80 * d < est < 1.03 * d, (d, est)
    assert np.all(np.diff(ests) > 0)


@pytest.mark.parametrize("d", [2, 5, 8])
def test_periodic_hypercube_is_unbiased(d):
    # without boundaries (flat torus, precomputed periodic distances) the estimate is unbiased
    X = np.random.default_rng(7 + d).random((1500, d))
    est = TwoNN(metric="precomputed").fit(_torus_distances(X))
    assert est.dimension_ == pytest.approx(d, rel=0.12)


@pytest.mark.parametrize("d", [3, 6])
def test_linear_subspace_in_100d_with_noise(d):
    rng = np.random.default_rng(d)
    Z = rng.standard_normal((3000, d))
    Q, _ = np.linalg.qr(rng.standard_normal((100, d)))
    X = Z @ Q.T + 1e-3 * rng.standard_normal((3000, 100))
    assert TwoNN().fit(X).dimension_ == pytest.approx(d, rel=0.10)


def test_sphere_s2_in_r3():
    V = np.random.default_rng(3).standard_normal((3000, 3))
    X = V / np.linalg.norm(V, axis=1, keepdims=True)
    est = TwoNN().fit(X)
    assert est.dimension_ == pytest.approx(2.0, rel=0.05)
    assert est.n_used_ == 3000
    assert est.n_fit_ == 2700
    assert est.mu_.shape == (3000,) and np.all(est.mu_ >= 1)
    np.testing.assert_array_equal(est.sample_indices_, np.arange(3000))


def test_error_estimate_shrinks_with_n():
    errs = []
    for n in (250, 1000, 4000):
        X = np.random.default_rng(n).random((n, 3))
        est = TwoNN().fit(X)
        errs.append(est.dimension_err_)
        # ~1.07 d / sqrt(N) for discard_fraction = 0.1
        assert est.dimension_err_ == pytest.approx(1.07 * est.dimension_ / np.sqrt(n), rel=0.05)
    assert errs[0] > 1.8 * errs[1] > 3.2 * errs[2]


def test_error_estimate_matches_model_simulation():
    # ratios drawn from the exact Pareto law: the delta-method SD matches the Monte-Carlo SD
    from netphys.stats.dimension import _twonn_fit

    rng = np.random.default_rng(5)
    d, N = 6.0, 800
    fits = [_twonn_fit(np.exp(rng.exponential(1 / d, N)), 0.1) for _ in range(400)]
    est = np.array([f[0] for f in fits])
    assert np.mean([f[1] for f in fits]) == pytest.approx(est.std(ddof=1), rel=0.15)


# ------------------------------------------------------------------------------- references
@pytest.mark.parametrize("name", sorted(DADAPY_2NN))
def test_pinned_dadapy_values(name):
    X = reference_datasets()[name]
    d90, d70 = DADAPY_2NN[name]
    assert TwoNN().fit(X).dimension_ == pytest.approx(d90, rel=1e-8)
    assert TwoNN(discard_fraction=0.3).fit(X).dimension_ == pytest.approx(d70, rel=1e-8)


@pytest.mark.parametrize("name", sorted(DADAPY_2NN))
def test_agrees_with_dadapy(name):
    dadapy = pytest.importorskip("dadapy", exc_type=ImportError)
    X = reference_datasets()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dadapy.Data(X, verbose=False).compute_id_2NN()[0]
    assert TwoNN().fit(X).dimension_ == pytest.approx(ref, rel=0.01)
    assert TwoNN().fit(X).dimension_ == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("name", ["cube5", "sphere2"])
def test_agrees_with_scikit_dimension(name):
    skdim = pytest.importorskip("skdim", exc_type=ImportError)
    X = reference_datasets()[name]
    ref = skdim.id.TwoNN().fit(X).dimension_
    assert TwoNN().fit(X).dimension_ == pytest.approx(ref, rel=1e-8)


# ------------------------------------------------------------------------------- duplicates
def _with_duplicates(n=1000, n_dup=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3))
    copies = X[rng.choice(n, n_dup, replace=False)]
    return X, np.vstack([X, copies])


def test_duplicates_drop_warns_and_counts():
    X, Xd = _with_duplicates()
    with pytest.warns(DuplicatePointsWarning, match=r"50 of 1050 points are duplicates .* dropped"):
        est = TwoNN().fit(Xd)
    assert est.n_duplicates_ == 50
    assert est.n_used_ == 1000
    assert np.all(np.isfinite(est.mu_))
    np.testing.assert_array_equal(est.sample_indices_, np.arange(1000))
    assert est.dimension_ == TwoNN().fit(X).dimension_


def test_negative_zero_counts_as_duplicate():
    X = np.random.default_rng(1).random((200, 2)) - 0.5
    X[0] = 0.0
    Xd = np.vstack([X, -0.0 * X[:1]])
    with pytest.warns(DuplicatePointsWarning):
        assert TwoNN().fit(Xd).n_duplicates_ == 1


def test_duplicates_error():
    _, Xd = _with_duplicates()
    with pytest.raises(NetphysError, match=r"the 'X' parameter of TwoNN.fit must be free of duplicate "
                                           r"points when duplicates='error', got '50 duplicate row\(s\)'"):
        TwoNN(duplicates="error").fit(Xd)


def test_duplicates_jitter_keeps_rows_and_is_reproducible():
    X, Xd = _with_duplicates()
    with pytest.warns(DuplicatePointsWarning, match="jittered"):
        a = TwoNN(duplicates="jitter", random_state=3).fit(Xd)
    with pytest.warns(DuplicatePointsWarning):
        b = TwoNN(duplicates="jitter", random_state=3).fit(Xd)
    assert a.n_used_ == 1050 and a.n_duplicates_ == 50
    np.testing.assert_array_equal(a.mu_, b.mu_)
    assert a.dimension_ == b.dimension_
    # the jittered copies carry no manifold information and bias the estimate down (documented)
    assert a.dimension_ < TwoNN().fit(X).dimension_


def test_duplicates_precomputed_drop_and_jitter_refused():
    X, Xd = _with_duplicates(n=300, n_dup=10)
    D = np.sqrt(((Xd[:, None] - Xd[None]) ** 2).sum(-1))
    with pytest.warns(DuplicatePointsWarning):
        est = TwoNN(metric="precomputed").fit(D)
    assert est.n_duplicates_ == 10
    assert est.dimension_ == pytest.approx(TwoNN().fit(X).dimension_, rel=1e-10)
    with pytest.raises(NetphysError, match="'duplicates' parameter of TwoNN.fit must be 'drop' or 'error'"):
        TwoNN(metric="precomputed", duplicates="jitter").fit(D)


def test_zero_distance_under_pseudometric_is_dropped():
    # distinct rows at distance exactly 0 under a pseudo-metric (only the first coordinate counts)
    X = np.random.default_rng(2).random((150, 2))
    Xd = np.vstack([X, np.column_stack([X[:5, 0], X[:5, 1] + 1.0])])

    def first_coordinate(a, b):
        return abs(a[0] - b[0])

    with pytest.warns(DuplicatePointsWarning, match="10 of 155 points"):
        est = TwoNN(metric=first_coordinate).fit(Xd)
    assert est.n_duplicates_ == 10  # both members of each pair
    assert est.n_used_ == 145 and np.all(np.isfinite(est.mu_))
    with pytest.raises(NetphysError, match="free of points at zero distance"):
        TwoNN(metric=first_coordinate, duplicates="error").fit(Xd)


def test_all_identical_points():
    with pytest.raises(NetphysError, match=r"at least 3 distinct points \(rows\), got '2 distinct point"):
        TwoNN().fit(np.vstack([np.zeros((5, 3)), np.ones((5, 3))]))


def test_regular_grid_degenerate():
    g = np.arange(12.0)
    X = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    with pytest.raises(NetphysError, match="mu = 1"):
        TwoNN().fit(X)


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("X, match", [
    (np.zeros((2, 3)), r"the 'X' parameter of TwoNN.fit must be an array with at least 3 points \(rows\), "
                       r"got '2 point\(s\)'"),
    (np.arange(10.0), r"the 'X' parameter of TwoNN.fit must be a 2-D array of shape \(n_points, "
                      r"n_features\), got 'an array of shape \(10,\)'; reshape 1-D data"),
    (np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 1.0], [2.0, 2.0]]),
     r"the 'X' parameter of TwoNN.fit must be finite \(no NaN or inf\), got '1 non-finite value\(s\)"),
    (np.array([["a", "b"]] * 4), r"must be a numeric array"),
])
def test_input_errors(X, match):
    with pytest.raises(NetphysError, match=match):
        TwoNN().fit(X)


@pytest.mark.parametrize("kwargs, match", [
    ({"discard_fraction": 1.0}, r"'discard_fraction' parameter of TwoNN.fit must be a float in the open "
                                r"interval \(0, 1\), got 1.0"),
    ({"discard_fraction": 0}, r"'discard_fraction' .* got 0"),
    ({"duplicates": "keep"}, r"'duplicates' parameter of TwoNN.fit must be one of 'drop', 'jitter', "
                             r"'error', got 'keep'"),
    ({"metric": "nope"}, r"'metric' parameter of TwoNN.fit must be 'euclidean', 'precomputed' or a metric"),
    ({"random_state": -1, "duplicates": "jitter"}, r"'random_state' parameter of TwoNN.fit"),
])
def test_parameter_errors(kwargs, match):
    X = np.random.default_rng(0).random((50, 2))
    X = np.vstack([X, X[:2]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicatePointsWarning)
        with pytest.raises(NetphysError, match=match):
            TwoNN(**kwargs).fit(X)


def test_precomputed_must_be_square():
    with pytest.raises(NetphysError, match="square distance matrix"):
        TwoNN(metric="precomputed").fit(np.ones((5, 4)))


def test_fit_returns_self_and_repr():
    est = TwoNN(discard_fraction=0.2)
    assert est.fit(np.random.default_rng(0).random((100, 2))) is est
    assert repr(est) == "TwoNN(discard_fraction=0.2, duplicates='drop', metric='euclidean', random_state=0)"
    assert est.set_params(discard_fraction=0.3).discard_fraction == 0.3


def test_float32_and_int_input():
    X = np.random.default_rng(0).random((500, 3))
    d64 = TwoNN().fit(X).dimension_
    assert TwoNN().fit(X.astype(np.float32)).dimension_ == pytest.approx(d64, rel=1e-3)
    Xi = np.random.default_rng(1).integers(0, 10**6, size=(500, 3))
    assert TwoNN().fit(Xi).dimension_ == pytest.approx(TwoNN().fit(Xi.astype(float)).dimension_)


# ---------------------------------------------------------------------- population scaling
def _population(n_stim=300, n_units=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_stim, d))
    W = rng.standard_normal((d, n_units))
    return np.tanh(Z @ W / np.sqrt(d)) + 0.01 * rng.standard_normal((n_stim, n_units))


def test_id_vs_population_table_and_reproducibility():
    X = _population()
    ds = id_vs_population(X, [2, 5, 10, 40], n_repeats=6, random_state=11)
    assert dict(ds.sizes) == {"n_units": 4, "realisation": 6}
    np.testing.assert_array_equal(ds.n_units.values, [2, 5, 10, 40])
    np.testing.assert_array_equal(ds.n_subsets.values, [6, 6, 6, 1])
    assert ds.id_sd.sel(n_units=40).item() == 0.0
    assert np.isnan(ds.id.sel(n_units=40).values[1:]).all()
    assert ds.id_mean.sel(n_units=40).item() == pytest.approx(TwoNN().fit(X).dimension_)
    assert ds.id_mean.sel(n_units=40).item() == pytest.approx(3.0, rel=0.15)
    assert ds.id_mean.sel(n_units=2).item() < 2.2
    assert ds.attrs["n_total_units"] == 40 and ds.attrs["n_points"] == 300
    again = id_vs_population(X, [2, 5, 10, 40], n_repeats=6, random_state=11)
    np.testing.assert_array_equal(ds.id.values, again.id.values)
    other = id_vs_population(X, [2, 5, 10, 40], n_repeats=6, random_state=12)
    assert not np.allclose(ds.id.values[:3], other.id.values[:3])
    table = ds[["id_mean", "id_sd"]].to_dataframe()
    assert list(table.columns) == ["id_mean", "id_sd"] and len(table) == 4


def test_id_vs_population_enumerates_small_combinations_and_reports_duplicates():
    X = np.random.default_rng(0).random((200, 4))
    X = np.vstack([X, X[:20]])  # every sub-population has >= 20 duplicated stimuli
    with pytest.warns(DuplicatePointsWarning, match="5 sub-population estimate"):
        ds = id_vs_population(X, [3, 4], n_repeats=10, random_state=0)
    np.testing.assert_array_equal(ds.n_subsets.values, [4, 1])  # comb(4, 3) = 4 subsets, all used
    assert (ds.n_duplicates.values[0, :4] >= 20).all() and ds.n_duplicates.values[1, 0] == 20
    assert np.isnan(ds.id.values[0, 4:]).all()


def test_id_vs_population_lattice_counts_fail_gracefully():
    # integer spike counts of 2 units: mu = 1 for almost every point, TwoNN undefined -> NaN + warning
    counts = np.random.default_rng(0).poisson(1.0, size=(300, 2)).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicatePointsWarning)
        with pytest.warns(RuntimeWarning, match="failed and are NaN; first: n_units=2"):
            ds = id_vs_population(counts, [2], n_repeats=3, random_state=0)
    assert ds.n_failed.item() == 1 and np.isnan(ds.id_mean.item())


def test_id_vs_population_errors():
    X = _population()
    with pytest.raises(NetphysError, match=r"'n_units' parameter of id_vs_population must be a sequence "
                                           r"of ints in \[1, 40\]"):
        id_vs_population(X, [0, 5])
    with pytest.raises(NetphysError, match=r"'n_units' parameter of id_vs_population must be a non-empty"):
        id_vs_population(X, [2.5])
    with pytest.raises(NetphysError, match=r"'n_repeats' parameter of id_vs_population must be an int >= 1"):
        id_vs_population(X, [2], n_repeats=0)
    with pytest.raises(NetphysError, match="'estimator' parameter"):
        id_vs_population(X, [2], estimator="TwoNN")


# ------------------------------------------------------------------------------- power law
def test_power_law_recovers_asymptote():
    n = np.array([4, 8, 16, 32, 64, 128, 256, 512], dtype=float)
    truth = (12.0, 9.0, 0.6)
    rng = np.random.default_rng(0)
    samples = power_law(n, *truth)[:, None] + 0.05 * rng.standard_normal((n.size, 30))
    fit = fit_power_law(n, samples.mean(1), samples.std(1, ddof=1), id_samples=samples, n_boot=60,
                        random_state=1)
    assert isinstance(fit, PowerLawFit) and fit.weighted and not fit.at_bound
    assert fit.d_inf == pytest.approx(12.0, rel=0.03)
    assert abs(fit.d_inf - 12.0) < 4 * fit.d_inf_boot_err
    assert fit.b == pytest.approx(0.6, rel=0.15)
    assert 0 < fit.d_inf_err < 0.5
    assert fit.d_inf_boot.shape == (60,) and 0 < fit.d_inf_boot_err < 0.5
    np.testing.assert_allclose(fit.id_fit, fit.predict(n))
    grid, curve = fit.curve(n_max=1e4)
    assert grid[-1] == pytest.approx(1e4) and curve[-1] < fit.d_inf


def test_power_law_decreasing_curve_and_unweighted():
    n = np.array([5, 10, 20, 40, 80, 160], dtype=float)
    y = power_law(n, 4.0, -6.0, 0.8)  # approaches from above
    fit = fit_power_law(n, y)
    assert fit.d_inf == pytest.approx(4.0, rel=1e-3) and fit.a < 0 and not fit.weighted
    assert not fit.at_bound


def test_power_law_unbounded_growth_is_flagged():
    n = np.array([5, 10, 20, 40, 80, 160], dtype=float)
    with pytest.warns(RuntimeWarning, match="at its bound"):
        fit = fit_power_law(n, 2.0 + 3.0 * np.log(n))  # no saturation
    assert fit.at_bound


def test_power_law_on_population_curve():
    ds = id_vs_population(_population(n_units=60), [3, 5, 8, 12, 20, 35, 60], n_repeats=5, random_state=0)
    fit = fit_power_law(ds.n_units, ds.id_mean, ds.id_sd, id_samples=ds.id, n_boot=20, random_state=0)
    assert fit.d_inf == pytest.approx(ds.id_mean.values[-1], rel=0.1)
    assert np.isfinite(fit.d_inf_err) and np.isfinite(fit.d_inf_boot_err)


def test_power_law_errors():
    with pytest.raises(NetphysError, match=r"'n' parameter of fit_power_law must be at least 4 population "
                                           r"sizes to fit 3 parameters, got '3 size\(s\)'"):
        fit_power_law([1, 2, 3], [1, 2, 3])
    with pytest.raises(NetphysError, match="'id_mean' parameter of fit_power_law must be an array of the "
                                           "same length"):
        fit_power_law([1, 2, 3, 4], [1, 2, 3])
    with pytest.raises(NetphysError, match="'id_mean' parameter of fit_power_law must be finite"):
        fit_power_law([1, 2, 3, 4], [1, 2, np.nan, 4])
    with pytest.raises(NetphysError, match="'n' parameter of fit_power_law must be positive"):
        fit_power_law([0, 2, 3, 4], [1, 2, 3, 4])
    with pytest.raises(NetphysError, match="'id_samples' parameter of fit_power_law must be given when "
                                           "n_boot > 0"):
        fit_power_law([1, 2, 3, 4], [1, 2, 3, 4], n_boot=5)


# ---------------------------------------------------------------------- scikit-learn estimator protocol
def test_twonn_is_a_sklearn_estimator_with_a_float_score():
    from sklearn.base import BaseEstimator, clone

    est = TwoNN(0.2, duplicates="error", random_state=4)
    assert isinstance(est, BaseEstimator)
    assert est.get_params() == {"discard_fraction": 0.2, "duplicates": "error", "metric": "euclidean",
                                "random_state": 4}
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params() and not hasattr(twin, "dimension_")
    assert TwoNN().random_state == 0  # one default for random_state
    with pytest.raises(NetphysError, match="not fitted yet"):
        twin.score(np.zeros((5, 2)))
    rng = np.random.default_rng(0)
    X = rng.random((3000, 2))
    est.fit(X)
    s = est.score(rng.random((3000, 2)))
    assert isinstance(s, float)
    d = est.dimension_
    # about the Pareto law's expected log-density (the boundary of the square fattens the tail of mu)
    assert s == pytest.approx(np.log(d) - (d + 1) / d, abs=0.15)
    # the likelihood prefers the fitted dimension to a wrong one
    wrong = clone(est).fit(X)
    wrong.dimension_ = 2 * d
    assert est.score(X) > wrong.score(X)

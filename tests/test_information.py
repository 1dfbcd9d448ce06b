"""Tests for netphys.stats.information (single-unit information, vectorised over units)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from netphys._validation import NetphysError, NetphysWarning
from netphys.stats import InformationResult, equal_width_bins, layer_information, mutual_information
from netphys.stats.information import _bayesian_bin_count

LN2 = math.log(2.0)
# most reference comparisons deliberately use small samples; the warning has its own tests
pytestmark = pytest.mark.filterwarnings("ignore::netphys._validation.NetphysWarning")


# ------------------------------------------------------------------------------------------
# straightforward per-unit reference: loop + numpy.histogram2d/histogramdd + explicit formulas
# ------------------------------------------------------------------------------------------
def ref_bayes_count(counts):
    """Scalar transcription of the Panzeri & Treves (1996) relevant-bin count (while loop)."""
    counts = np.asarray(counts, dtype=float)
    dim = counts.size
    n = counts.sum()
    nz = counts[counts > 0]
    r = nz.size
    if r == dim:
        return float(r)
    p = nz / n
    prev = float(dim)
    delta = abs(r - np.sum(1.0 - (1.0 - p) ** n))
    extra = 0
    while delta < prev and r + extra < dim:
        extra += 1
        gamma = extra * (1.0 - (n / (n + r)) ** (1.0 / n))
        q = (1.0 - gamma) / (n + r) * (nz + 1.0)
        expected = np.sum(1.0 - (1.0 - q) ** n) + extra * (1.0 - (1.0 - gamma / extra) ** n)
        prev, delta = delta, abs(r - expected)
    return float(r + extra - 1 + (delta < prev))


def ref_unit(xu, yu, bins=20, x_bins=None, discrete=False, counting="naive"):
    x_bins = bins if x_bins is None else x_bins
    if discrete:
        labels, codes = np.unique(xu, return_inverse=True)
        h = np.histogram2d(codes.ravel(), yu, bins=[np.arange(labels.size + 1) - 0.5, bins])[0]
    elif xu.ndim == 1:
        h = np.histogram2d(xu, yu, bins=[x_bins, bins])[0]
    else:
        d = xu.shape[1]
        h = np.histogramdd(np.column_stack([xu, yu]), bins=[x_bins] * d + [bins])[0]
        h = h.reshape(-1, bins)
    n = h.sum()
    p = h / n
    px, py = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float(np.sum(p[nz] * np.log2(p[nz] / np.outer(px, py)[nz])))
    hx = float(-np.sum(px[px > 0] * np.log2(px[px > 0])))
    hy = float(-np.sum(py[py > 0] * np.log2(py[py > 0])))
    if counting == "naive":
        bias = ((h > 0).sum() - (px > 0).sum() - (py > 0).sum() + 1) / (2 * n * LN2)
        bias_hx = ((px > 0).sum() - 1) / (2 * n * LN2)  # Miller-Madow
    else:
        cond = sum(ref_bayes_count(row) - 1 for row in h if row.sum() > 0)
        bias = (cond - (ref_bayes_count(h.sum(axis=0)) - 1)) / (2 * n * LN2)
        bias_hx = (ref_bayes_count(h.sum(axis=1)) - 1) / (2 * n * LN2)
    if hx == 0 or hy == 0:
        bias = 0.0
    mi_c = mi - bias
    hx_c = hx + bias_hx if hx > 0 else 0.0
    return dict(mi_plugin=max(mi, 0.0), bias=bias, mi=mi_c, h_x=hx, h_y=hy, h_x_corrected=hx_c,
                normalized=min(mi_c / hx_c, 1.0) if hx > 0 else 0.0)


def ref_layer(x, y, *, per_unit, **kw):
    rows = [ref_unit(x[:, i] if per_unit else x, y[:, i], **kw) for i in range(y.shape[1])]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def assert_matches(res, ref, atol=1e-10):
    for key in ("mi_plugin", "bias", "mi", "h_x", "h_y", "h_x_corrected", "normalized"):
        np.testing.assert_allclose(getattr(res, key), ref[key], rtol=0, atol=atol, err_msg=key)


def H2(p):
    return 0.0 if p in (0.0, 1.0) else -p * math.log2(p) - (1 - p) * math.log2(1 - p)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def _dependent(rng, n, u, noise=1.0):
    x = rng.normal(size=(n, u))
    y = x * rng.uniform(0, 2, size=u) + noise * rng.normal(size=(n, u))
    return x, y


# ------------------------------------------------------------------------------------------
# equal_width_bins
# ------------------------------------------------------------------------------------------
def test_equal_width_bins_matches_numpy_histogram(rng):
    n = 401
    cols = [rng.normal(size=n), rng.integers(0, 7, size=n).astype(float),
            np.linspace(0.0, 1.0, n),                # many values exactly on edges
            1e6 + rng.uniform(0, 1e-3, size=n),      # large offset, small range
            np.round(rng.uniform(-3, 3, size=n), 1)]
    a = np.column_stack(cols)
    for bins in (2, 7, 20):
        codes = equal_width_bins(a, bins)
        assert codes.shape == a.shape and codes.min() >= 0 and codes.max() < bins
        for j in range(a.shape[1]):
            edges = np.histogram_bin_edges(a[:, j], bins)
            expected = np.clip(np.searchsorted(edges, a[:, j], side="right") - 1, 0, bins - 1)
            np.testing.assert_array_equal(codes[:, j], expected)
            np.testing.assert_array_equal(np.bincount(codes[:, j], minlength=bins),
                                          np.histogram(a[:, j], bins)[0])


def _linspace_codes(col, bins):
    col = np.asarray(col, dtype=float)
    if col.min() == col.max():
        return np.zeros(col.size, dtype=int)
    edges = np.linspace(col.min(), col.max(), bins + 1)
    return np.clip(np.searchsorted(edges, col, side="right") - 1, 0, bins - 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_equal_width_bins_exact_on_edges_and_extreme_ranges(rng, dtype):
    n = 300
    lo, step = rng.uniform(-5, 5, size=40), 10.0 ** rng.uniform(-6, 3, size=40)
    on_edges = lo + rng.integers(0, 21, size=(n, 40)) * step  # on (or within rounding of) edges
    # offsets from 1x to 1e9x the range: float32 positions, float64 positions, exact fallback
    offset = 10.0 ** rng.uniform(0, 9, size=40) * rng.choice([-1, 1], size=40)
    on_edges = np.column_stack([on_edges, offset + rng.integers(0, 41, size=(n, 40)) * 0.05])
    cols = [on_edges, rng.normal(size=(n, 40)) * 10.0 ** rng.uniform(-8, 8, size=40),
            np.column_stack([1e12 + rng.uniform(0, 1e-3, size=n),   # range ~1e-15 of magnitude
                             1e6 + np.arange(n) * 1e-9,
                             np.full(n, 7.0), (np.arange(n) % 9) - 4.0,
                             (np.arange(n) % 4) * 1e-320])]             # subnormal range
    a = np.column_stack(cols).astype(dtype)
    for bins in (2, 20, 50):
        codes = equal_width_bins(a, bins)
        for j in range(a.shape[1]):
            np.testing.assert_array_equal(codes[:, j], _linspace_codes(a[:, j], bins),
                                          err_msg=f"column {j}, bins {bins}")


def test_extreme_range_feature_column_in_mutual_information(rng):
    n = 300
    x = rng.normal(size=(n, 3))
    x[:, 1] = 1e12 + rng.uniform(0, 1e-3, size=n)  # binned by the exact fallback
    y = x * [1.0, 0.0, 1.0] + rng.normal(size=(n, 3))
    y[:, 1] = x[:, 1] - 1e12 + 1e-4 * rng.normal(size=n)
    res = mutual_information(x, y, bins=10)
    codes = np.column_stack([_linspace_codes(x[:, j], 10) for j in range(3)])
    ref = mutual_information(codes, y, bins=10, x_discrete=True)
    assert_matches(res, {k: getattr(ref, k) for k in ("mi_plugin", "bias", "mi", "h_x", "h_y",
                                                      "h_x_corrected", "normalized")})
    assert res.mi[1] > 1.0


def test_equal_width_bins_constant_columns_and_1d():
    a = np.array([[1.0, 5.0, 0.0], [2.0, 5.0, 0.0], [3.0, 5.0, 1.0]])
    codes, constant = equal_width_bins(a, 2, return_constant=True)
    np.testing.assert_array_equal(constant, [False, True, False])
    np.testing.assert_array_equal(codes[:, 1], 0)
    np.testing.assert_array_equal(codes[:, 0], [0, 1, 1])
    c1, k1 = equal_width_bins(np.full(4, 2.5), return_constant=True)
    assert bool(k1) and c1.shape == (4,) and not c1.any()
    np.testing.assert_array_equal(equal_width_bins([0.0, 0.4, 1.0, 0.5], bins=2), [0, 0, 1, 1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(values=np.zeros(3), bins=1), r"the 'bins' parameter of equal_width_bins must be an int >= 2, got 1"),
    (dict(values=np.zeros(0)), r"'values' parameter of equal_width_bins must be a non-empty"),
    (dict(values=np.array([0.0, np.nan])), r"'values' .* must be finite"),
    (dict(values=np.array(["a", "b"])), r"'values' .* real-valued"),
])
def test_equal_width_bins_errors(kwargs, match):
    with pytest.raises(NetphysError, match=match):
        equal_width_bins(**kwargs)


# ------------------------------------------------------------------------------------------
# agreement with the per-unit reference
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("counting", ["naive", "bayesian"])
def test_matches_reference_per_unit_x(rng, counting):
    n, u = 300, 12
    x, y = _dependent(rng, n, u)
    y[:, 3] = 1.5          # constant activation
    x[:, 5] = -2.0         # constant feature
    y[:, 7] = np.round(y[:, 7])  # values on a lattice
    res = mutual_information(x, y, bins=10, x_bins=8, bias_counting=counting)
    assert isinstance(res, InformationResult) and res.n_units == u and res.n_samples == n
    assert_matches(res, ref_layer(x, y, per_unit=True, bins=10, x_bins=8, counting=counting))


@pytest.mark.parametrize("counting", ["naive", "bayesian"])
def test_matches_reference_shared_x(rng, counting):
    n, u = 250, 9
    x = rng.uniform(size=n)
    y = np.sin(6 * x)[:, None] * rng.normal(size=u) + rng.normal(size=(n, u))
    res = mutual_information(x, y, bias_counting=counting)
    assert_matches(res, ref_layer(x, y, per_unit=False, counting=counting))
    # (n, 1) is the same shared feature
    assert_matches(mutual_information(x[:, None], y, bias_counting=counting),
                   ref_layer(x, y, per_unit=False, counting=counting))


def test_matches_reference_joint_2d_x(rng):
    n, u = 400, 6
    x = rng.uniform(0, np.pi, size=(n, u, 2))  # per-unit corner pair
    y = np.cos(2 * x[:, :, 0]) + np.sin(x[:, :, 1]) + 0.5 * rng.normal(size=(n, u))
    res = mutual_information(x, y, bins=20)
    assert_matches(res, ref_layer(x, y, per_unit=True, bins=20))
    assert np.all(res.r_x <= 400)
    # shared 2-D feature given as (n, 2) and as (n, 1, 2)
    xs = x[:, 0, :]
    ref = ref_layer(xs, y, per_unit=False, bins=20, x_bins=5)
    assert_matches(mutual_information(xs, y, bins=20, x_bins=5), ref)
    assert_matches(mutual_information(xs[:, None, :], y, bins=20, x_bins=5), ref)


def test_two_column_x_with_two_units_is_per_unit(rng):
    x, y = _dependent(rng, 200, 2)
    assert_matches(mutual_information(x, y, bins=10), ref_layer(x, y, per_unit=True, bins=10))


@pytest.mark.parametrize("counting", ["naive", "bayesian"])
def test_matches_reference_discrete_x(rng, counting):
    n, u = 500, 7
    labels = np.array(["cat", "dog", "car", "cup", "owl"])
    lab = rng.integers(0, 5, size=n)
    y = lab[:, None] * rng.uniform(0, 1, size=u) + rng.normal(size=(n, u))
    res = mutual_information(labels[lab], y, x_discrete=True, bias_counting=counting)
    assert_matches(res, ref_layer(labels[lab], y, per_unit=False, discrete=True, counting=counting))
    # per-unit integer labels, one unit with a single label
    xl = rng.integers(0, 4, size=(n, u))
    xl[:, 2] = 3
    res = mutual_information(xl, y, x_discrete=True, bins=12, bias_counting=counting)
    assert_matches(res, ref_layer(xl, y, per_unit=True, discrete=True, bins=12, counting=counting))
    assert res.x_constant.tolist() == [i == 2 for i in range(u)]
    # widely spread integer labels (sorted with numpy.unique instead of offset)
    res = mutual_information(xl * 5000 - 7, y, x_discrete=True, bins=12, bias_counting=counting)
    assert_matches(res, ref_layer(xl, y, per_unit=True, discrete=True, bins=12, counting=counting))


def test_bayesian_count_vectorised_matches_loop(rng):
    rows = []
    for dim in (2, 5, 20):
        for n in (1, 3, 10, 50, 400):
            p = rng.dirichlet(np.full(dim, 0.3))
            rows.append(np.pad(rng.multinomial(n, p), (0, 20 - dim)))
    counts = np.array(rows)
    for dim in (2, 5, 20):
        sub = counts[:, :dim]
        sub = sub[sub.sum(axis=1) > 0]
        got = _bayesian_bin_count(sub)
        want = np.array([ref_bayes_count(r) for r in sub])
        np.testing.assert_array_equal(got, want)
        naive = (sub > 0).sum(axis=1)
        assert np.all(got >= naive) and np.all(got <= dim)
    assert _bayesian_bin_count(np.array([[3, 1, 2]]))[0] == 3  # fully occupied: unchanged


# ------------------------------------------------------------------------------------------
# known answers
# ------------------------------------------------------------------------------------------
def test_independent_bias_correction_across_n(rng):
    plug, naive, bayes = [], [], []
    for n in (100, 300, 1000, 3000):
        x, y = rng.normal(size=(n, 100)), rng.normal(size=(n, 100))
        a = mutual_information(x, y)
        b = mutual_information(x, y, bias_counting="bayesian")
        plug.append(a.mi_plugin.mean())
        naive.append(a.mi.mean())
        bayes.append(b.mi.mean())
        assert abs(naive[-1]) < plug[-1]
        assert abs(bayes[-1]) <= abs(naive[-1])
        assert np.all(b.bias >= a.bias - 1e-12)
    plug = np.array(plug)
    assert np.all(np.diff(plug) < 0)
    assert 2.0 < plug[2] / plug[3] < 3.5           # ~1/N once N >> number of cells
    assert plug[3] < 361 / (2 * 3000 * LN2) * 1.1  # below the asymptotic (R-1)/(2N ln 2)
    assert abs(naive[3]) < 0.4 * plug[3] and abs(bayes[3]) < 0.015


def test_independent_uniform_large_n_corrected_near_zero(rng):
    n = 20000
    x, y = rng.uniform(size=(n, 50)), rng.uniform(size=(n, 50))
    res = mutual_information(x, y)
    expected_bias = 361 / (2 * n * LN2)
    assert res.mi_plugin.mean() == pytest.approx(expected_bias, rel=0.1)
    assert abs(res.mi.mean()) < 0.1 * expected_bias


def test_bijection_gives_entropy_of_x(rng):
    n = 4000
    x = rng.integers(0, 8, size=n)
    perm = rng.permutation(8)
    y = np.column_stack([perm[x] * 2.5 + 1, np.sqrt(perm[x] + 1.0)])
    res = mutual_information(x, y, x_discrete=True, correction="none")
    counts = np.bincount(x)
    hx = -np.sum(counts / n * np.log2(counts / n))
    np.testing.assert_allclose(res.mi_plugin, hx, atol=1e-12)
    np.testing.assert_allclose(res.h_x, hx, atol=1e-12)
    np.testing.assert_allclose(res.normalized, 1.0, atol=1e-12)
    assert layer_information(x, y, x_discrete=True, correction="none") == pytest.approx(1.0)
    # PT: R_xy = R_x = R_y = 8 -> a negative bias of -7 / (2 N ln 2)
    pt = mutual_information(x, y, x_discrete=True)
    np.testing.assert_allclose(pt.bias, -7 / (2 * n * LN2), atol=1e-15)


def test_binary_symmetric_channel(rng):
    n, ps = 100_000, np.array([0.02, 0.1, 0.25, 0.5])
    x = rng.integers(0, 2, size=(n, ps.size))
    y = (x ^ (rng.uniform(size=x.shape) < ps)).astype(float)
    res = mutual_information(x, y, x_discrete=True)
    np.testing.assert_allclose(res.mi, [1 - H2(p) for p in ps], atol=0.01)
    np.testing.assert_allclose(res.normalized, res.mi / res.h_x_corrected)
    np.testing.assert_allclose(res.h_x_corrected, res.h_x + 1 / (2 * n * LN2))  # Miller-Madow


def test_z_channel_and_four_symbol_channel(rng):
    n = 100_000
    q, p = 0.5, 0.3
    x = (rng.uniform(size=n) < q).astype(int)
    y = np.where((x == 1) & (rng.uniform(size=n) < p), 0, x).astype(float)
    res = mutual_information(x, y[:, None], x_discrete=True)
    assert res.mi[0] == pytest.approx(H2(q * (1 - p)) - q * H2(p), abs=0.01)

    e = 0.2
    x = rng.integers(0, 4, size=n)
    wrong = (x + rng.integers(1, 4, size=n)) % 4
    y = np.where(rng.uniform(size=n) < e, wrong, x).astype(float)
    res = mutual_information(np.array(list("abcd"))[x], y[:, None], x_discrete=True)
    assert res.mi[0] == pytest.approx(2 - H2(e) - e * math.log2(3), abs=0.01)
    assert res.h_x[0] == pytest.approx(2.0, abs=0.001)


def test_gaussian_binned_mi_close_to_analytic(rng):
    n, rho = 200_000, 0.8
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=n)
    true = -0.5 * math.log2(1 - rho ** 2)
    mi = mutual_information(x, y[:, None]).mi[0]
    assert true - 0.06 < mi < true  # binning loses a little information


def test_constant_feature_or_activation_is_zero_flagged_no_warning(rng):
    n, u = 200, 5
    x, y = _dependent(rng, n, u)
    x[:, 1] = 3.0
    y[:, 2] = 0.0
    x[:, 4] = 1.0
    y[:, 4] = -1.0
    for counting in ("naive", "bayesian"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = mutual_information(x, y, bias_counting=counting)
        # no numerical warning; only the documented sample-size one (200 samples, 400 cells)
        assert [w.category for w in caught] == [NetphysWarning]
        assert "400 joint cells" in str(caught[0].message) and not res.sample_size_ok
        for key in InformationResult.per_unit_fields:
            assert np.all(np.isfinite(getattr(res, key).astype(float))), key
        np.testing.assert_array_equal(res.x_constant, [False, True, False, False, True])
        np.testing.assert_array_equal(res.y_constant, [False, False, True, False, True])
        for key in ("mi", "mi_plugin", "bias", "normalized"):
            np.testing.assert_array_equal(getattr(res, key)[[1, 2, 4]], 0.0)
        np.testing.assert_array_equal(res.h_x[[1, 4]], 0.0)
        np.testing.assert_array_equal(res.h_y[[2, 4]], 0.0)
        assert np.all(res.mi[[0, 3]] > 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layer_information(np.ones(n), y, bins=4) == 0.0  # 12.5 samples per cell


def test_properties_bounds(rng):
    n, u = 500, 40
    x = rng.normal(size=(n, u))
    y = np.tanh(x * rng.uniform(0, 3, size=u)) + rng.uniform(0, 1, size=u) * rng.normal(size=(n, u))
    y[:, :5] = np.round(y[:, :5])
    for kw in (dict(), dict(bins=5, x_bins=30), dict(bins=30, x_bins=3)):
        res = mutual_information(x, y, **kw)
        assert np.all(res.mi_plugin >= 0)
        assert np.all(res.mi_plugin <= np.minimum(res.h_x, res.h_y) + 1e-12)
        assert np.all(res.h_x <= math.log2(kw.get("x_bins", 20)) + 1e-12)
        assert np.all(res.h_y <= math.log2(kw.get("bins", 20)) + 1e-12)
        np.testing.assert_allclose(res.mi, res.mi_plugin - res.bias)
        assert np.all(res.r_xy <= res.r_x * res.r_y)


def test_inputs_not_modified_and_result_helpers(rng):
    x, y = _dependent(rng, 100, 4)
    xl = rng.integers(0, 3, size=100)
    x0, y0, xl0 = x.copy(), y.copy(), xl.copy()
    res = mutual_information(x, y, bins=10)
    mutual_information(xl, y, bins=10, x_discrete=True)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(xl, xl0)
    fields = ["mi", "mi_plugin", "bias", "h_x", "h_y", "normalized", "x_constant", "y_constant",
              "r_x", "r_y", "r_xy", "h_x_corrected", "null", "null_sd", "null_mi"]
    assert list(InformationResult.per_unit_fields) == fields
    df = res.to_dataframe()
    assert list(df.columns) == fields and len(df) == 4
    ds = res.to_xarray()
    assert ds.sizes["unit"] == 4 and ds.attrs["n_samples"] == 100
    np.testing.assert_array_equal(ds["mi"].values, res.mi)
    assert layer_information(x, y, bins=10) == pytest.approx(res.normalized.mean())
    assert layer_information(x, y, bins=10, normalize=False) == pytest.approx(res.mi.mean())
    # boolean and integer activations
    yb = y > 0
    assert_matches(mutual_information(x, yb, bins=10),
                   ref_layer(x, yb.astype(float), per_unit=True, bins=10))
    yi = np.round(3 * y).astype(np.int16)
    assert_matches(mutual_information(x, yi, bins=10),
                   ref_layer(x, yi.astype(float), per_unit=True, bins=10))
    # float32 activations give the same answer as float64
    assert_matches(mutual_information(x, y.astype(np.float32), bins=10),
                   ref_layer(x, y.astype(np.float32).astype(float), per_unit=True, bins=10))


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
_X, _Y = np.arange(50.0), np.arange(150.0).reshape(50, 3) % 7


@pytest.mark.parametrize("args, kwargs, match", [
    ((_X, _Y), dict(bins=1), r"^the 'bins' parameter of mutual_information must be an int >= 2, got 1$"),
    ((_X, _Y), dict(bins=2.0), r"'bins' parameter of mutual_information must be an int >= 2, got 2\.0"),
    ((_X, _Y), dict(x_bins=1), r"'x_bins' parameter of mutual_information must be an int >= 2"),
    ((_X, _Y), dict(bins=60), r"'bins' .* must be an int <= the number of samples \(50\), got 60; "
                              r"use fewer bins"),
    ((_X, _Y), dict(x_bins=51), r"'x_bins' .* <= the number of samples \(50\), got 51; use fewer bins"),
    ((_X[:40], _Y), {}, r"'x' parameter .* as many rows as 'y' \(n_samples=50\), got 'an array of shape \(40,\)'"),
    ((np.zeros((50, 4)), _Y), {}, r"'x' parameter .* got 'an array of shape \(50, 4\)'"),
    ((np.zeros((50, 3, 2, 1)), _Y), {}, r"'x' parameter .* got 'an array of shape \(50, 3, 2, 1\)'"),
    ((np.zeros((50, 3, 2)), _Y), dict(x_discrete=True), r"'x' parameter .* shape \(50, 3, 2\)"),
    ((_X, np.where(_Y > 5, np.nan, _Y)), {}, r"'y' parameter .* must be finite, got '\d+ NaN activations"),
    ((_X, np.where(_Y > 5, np.inf, _Y)), {}, r"0 NaN activations and \d+ infinite activations"),
    ((np.where(_X > 5, np.nan, _X), _Y), {}, r"'x' parameter of mutual_information must be finite"),
    ((_X, np.zeros((0, 3))), {}, r"'y' parameter .* must be a non-empty 2-D array .* shape \(0, 3\)"),
    ((_X, np.zeros((50, 0))), {}, r"'y' parameter .* non-empty .* shape \(50, 0\)"),
    ((_X, _Y[:, 0]), {}, r"'y' .* 2-D array .* got 'an array of shape \(50,\)'; pass y\[:, None\]"),
    ((_X, _Y.astype(str)), {}, r"'y' parameter .* real-valued"),
    ((_X, _Y), dict(correction="miller"), r"'correction' parameter .* one of 'pt', 'qe', 'shuffle', "
                                         r"'pt\+shuffle', 'qe\+shuffle', 'none', 'panzeri-treves', got 'miller'$"),
    ((_X, _Y), dict(bias_counting="exact"), r"'bias_counting' parameter .* one of 'naive', 'bayesian'"),
    ((np.zeros((50, 3, 8)), _Y), dict(), r"'x_bins' .* joint histogram"),
    ((np.zeros((50, 4, 2)), _Y), dict(), r"'x' parameter .* shape \(50, 4, 2\)"),
    ((np.where(_X > 5, np.nan, _X), _Y), dict(x_discrete=True), r"'x' parameter .* must be finite"),
    ((np.array([None] * 50), _Y), dict(x_discrete=True), r"'x' parameter .* one plain dtype"),
    ((_X.astype(str), _Y), dict(), r"'x' parameter .* real-valued"),
])
def test_errors(args, kwargs, match):
    with pytest.raises(NetphysError, match=match):
        mutual_information(*args, **kwargs)


def test_too_few_samples_for_bins_error_suggests_fewer_bins(rng):
    x, y = rng.normal(size=15), rng.normal(size=(15, 4))
    with pytest.raises(NetphysError, match="use fewer bins or more stimuli"):
        mutual_information(x, y)
    assert mutual_information(x, y, bins=5).mi.shape == (4,)

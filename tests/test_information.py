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


# ------------------------------------------------------------------------------------------
# corrections against ground truth (issue 9): QE, shuffle null, normalisation, warnings
# ------------------------------------------------------------------------------------------
def _plugin_from_codes(cx, cy, kx, ky):
    h = np.zeros((kx, ky))
    np.add.at(h, (cx, cy), 1)
    p = h / h.sum()
    px, py = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float(np.sum(p[nz] * np.log2(p[nz] / np.outer(px, py)[nz])))
    return mi, float(-np.sum(px[px > 0] * np.log2(px[px > 0])))


def gauss_binned_truth(x, y, rho, bins=20, nodes=24):
    """Exact I_B / H_B(X) of a binned standard bivariate normal, edges from each sample.

    Interior edges are those of the sample's equal-width bins, the outer bins are open (they
    hold the tails); cell probabilities by Gauss-Legendre quadrature in x of
    phi(x) [Phi((f_j+1 - rho x)/s) - Phi((f_j - rho x)/s)].
    """
    from scipy.special import ndtr

    gx, gw = np.polynomial.legendre.leggauss(nodes)
    s = math.sqrt(1 - rho ** 2)
    out = []
    for i in range(x.shape[1]):
        ex = np.linspace(x[:, i].min(), x[:, i].max(), bins + 1)
        ey = np.linspace(y[:, i].min(), y[:, i].max(), bins + 1)
        ex[0], ex[-1], ey[0], ey[-1] = -9.0, 9.0, -np.inf, np.inf
        lo, hi = ex[:-1], ex[1:]
        xs = 0.5 * (hi - lo)[:, None] * gx + 0.5 * (hi + lo)[:, None]
        wx = 0.5 * (hi - lo)[:, None] * gw * np.exp(-0.5 * xs ** 2) / math.sqrt(2 * math.pi)
        p = np.einsum("in,inj->ij", wx, np.diff(ndtr((ey - rho * xs[..., None]) / s), axis=2))
        p = np.clip(p, 0, None) / np.clip(p, 0, None).sum()
        px, py = p.sum(1), p.sum(0)
        nz = p > 0
        mi = np.sum(p[nz] * np.log2(p[nz] / np.outer(px, py)[nz]))
        out.append(mi / -np.sum(px[px > 0] * np.log2(px[px > 0])))
    return np.array(out)


def test_gauss_binned_truth_helper_is_exact_at_large_n(rng):
    # the plug-in estimate of 10^6 samples (bias ~ 361 / (2 N ln 2 H) ~ 6e-5) matches the helper
    n, rho = 1_000_000, 0.6
    x = rng.normal(size=(n, 1))
    y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=(n, 1))
    truth = gauss_binned_truth(x, y, rho)[0]
    est = mutual_information(x, y, correction="pt", n_shuffles=0)
    assert est.normalized[0] == pytest.approx(truth, abs=3e-4)
    # binning loses a little of the continuous information, never more than it has
    assert est.mi[0] < -0.5 * math.log2(1 - rho ** 2)


@pytest.mark.parametrize("n", [400, 1000, 5000])
@pytest.mark.parametrize("dims", [1, 2])
def test_shuffle_corrections_unbiased_on_independent_data(n, dims):
    # PT alone leaves +0.07 (1-D) / +0.28 (2-D normal X) at N = 400; the shuffle null removes it
    rng = np.random.default_rng(n + dims)
    u = {1: 200, 2: 60}[dims] if n == 5000 else 200
    x = rng.normal(size=(n, u) if dims == 1 else (n, u, 2))
    y = rng.normal(size=(n, u))
    pt = mutual_information(x, y, correction="pt")
    for corr in ("pt+shuffle", "shuffle"):
        res = mutual_information(x, y, correction=corr)
        assert abs(res.normalized.mean()) < 0.003, (corr, res.normalized.mean())
    if n == 400:
        assert pt.normalized.mean() > {1: 0.05, 2: 0.2}[dims]  # the bias being removed
        # the null is what the estimator gives without a relation: here, the estimate itself
        assert pt.null.mean() == pytest.approx(pt.normalized.mean(), abs=0.003)
        assert np.all(pt.null_sd > 0)


def test_pt_plus_shuffle_is_pt_minus_its_null(rng):
    x, y = _dependent(rng, 300, 30)
    for base in ("pt", "qe", "none"):
        b = mutual_information(x, y, correction=base, random_state=7)
        comb = "shuffle" if base == "none" else base + "+shuffle"
        c = mutual_information(x, y, correction=comb, random_state=7)
        np.testing.assert_array_equal(c.null_mi, b.null_mi)
        np.testing.assert_allclose(c.mi, b.mi - b.null_mi, rtol=0, atol=1e-14)
        np.testing.assert_allclose(c.normalized, np.minimum(c.mi / c.h_x_corrected, 1), atol=1e-14)
        np.testing.assert_allclose(c.bias, c.mi_plugin - c.mi, atol=1e-14)
        np.testing.assert_allclose(b.null, b.null_mi / b.h_x_corrected, atol=1e-14)


@pytest.mark.parametrize("rho", [0.3, 0.6])
def test_gaussian_against_exact_binned_truth(rho):
    rng = np.random.default_rng(int(rho * 10))
    n, u = 5000, 60
    x = rng.normal(size=(n, u))
    y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=(n, u))
    truth = gauss_binned_truth(x, y, rho)
    # tolerances from docs/information.md at N = 5000 (|bias| + 3 SD of a 60-unit mean)
    tol = {"none": None, "pt": 0.006, "qe": 0.004, "pt+shuffle": 0.003, "qe+shuffle": 0.003}
    for corr, t in tol.items():
        err = mutual_information(x, y, correction=corr, n_shuffles=10).normalized.mean() \
            - truth.mean()
        if t is None:
            assert err > 0.008  # the plug-in bias is really there
        else:
            assert abs(err) < t, (corr, err)


def test_discrete_channel_all_corrections(rng):
    # 4 symbols, symbol error e: I = 2 - H2(e) - e log2 3 bits
    n, u, e = 2000, 100, 0.2
    x = rng.integers(0, 4, size=(n, u))
    wrong = (x + rng.integers(1, 4, size=x.shape)) % 4
    y = np.where(rng.uniform(size=x.shape) < e, wrong, x).astype(float)
    true = 2 - H2(e) - e * math.log2(3)
    for corr in ("pt", "qe", "shuffle", "pt+shuffle", "qe+shuffle"):
        res = mutual_information(x, y, x_discrete=True, bins=4, correction=corr, n_shuffles=10)
        assert res.mi.mean() == pytest.approx(true, abs=0.004), corr
    plug = mutual_information(x, y, x_discrete=True, bins=4, correction="none", n_shuffles=0)
    assert plug.mi.mean() - true > 0.002  # (16 - 4 - 4 + 1) / (2 N ln 2) = 0.0032


@pytest.mark.parametrize("n", [100, 400])
def test_bijection_normalised_at_most_one(rng, n):
    x = rng.normal(size=n)
    y = np.column_stack([2.0 * x + 1.0, -x])  # the same 20 bins (reversed for the second)
    for corr in ("none", "pt", "qe"):
        res = mutual_information(x, y, correction=corr)
        np.testing.assert_allclose(res.normalized, 1.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.mi, res.h_x_corrected, rtol=0, atol=1e-12)
    for corr in ("shuffle", "pt+shuffle", "qe+shuffle"):
        res = mutual_information(x, y, correction=corr)
        assert np.all(res.normalized <= 1.0) and np.all(res.normalized > 0.5)
    # the paper's plug-in H(X) denominator exceeded 1 here (1.03 at N = 100)
    pt = mutual_information(x, y)
    assert np.all(pt.mi / pt.h_x > 1.0)
    # a Bayesian-counted PT estimate is clipped at 1, never above
    assert np.all(mutual_information(x, y, bias_counting="bayesian").normalized <= 1.0)


def test_naive_pt_normalised_never_above_one_without_clipping(rng):
    # mi <= h_x_corrected for every table with the naive count (see the Notes)
    for n, b in ((30, 10), (100, 20), (1000, 20)):
        x = rng.integers(0, 5, size=(n, 300)) * rng.uniform(0.5, 2, size=300)
        y = x + rng.uniform(0, 3, size=300) * rng.normal(size=(n, 300))
        res = mutual_information(x, y, bins=b, x_bins=b, n_shuffles=0)
        assert np.all(res.mi <= res.h_x_corrected + 1e-12)


def test_qe_matches_direct_extrapolation(rng):
    n, u, b = 203, 3, 8  # odd N: halves of 101, quarters of 50
    x, y = _dependent(rng, n, u)
    res = mutual_information(x, y, bins=b, correction="qe", n_shuffles=0, random_state=5)
    perm = np.random.default_rng(5).permutation(n)
    t = 1.0 / np.array([n, n // 2, n // 4])
    cx, cy = equal_width_bins(x, b), equal_width_bins(y, b)
    for i in range(u):
        vals, hs = [], []
        for k in (1, 2, 4):
            size = n // k
            parts = [_plugin_from_codes(cx[r, i], cy[r, i], b, b)
                     for r in (perm[j * size:(j + 1) * size] for j in range(k))]
            vals.append(np.mean([p[0] for p in parts]))
            hs.append(np.mean([p[1] for p in parts]))
        coef = np.linalg.solve(np.vander(t, 3, increasing=True), vals)
        hcoef = np.linalg.solve(np.vander(t, 3, increasing=True), hs)
        assert res.mi[i] == pytest.approx(coef[0], abs=1e-10)
        assert res.h_x_corrected[i] == pytest.approx(hcoef[0], abs=1e-10)
    from netphys.stats.information import _qe_weights
    np.testing.assert_allclose(_qe_weights(400, 200, 100), np.array([8, -6, 1]) / 3)


def test_seed_determinism_and_recording(rng):
    x, y = _dependent(rng, 200, 10)
    a = mutual_information(x, y, correction="qe+shuffle", random_state=3)
    b = mutual_information(x, y, correction="qe+shuffle", random_state=3)
    c = mutual_information(x, y, correction="qe+shuffle", random_state=4)
    for key in InformationResult.per_unit_fields:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert not np.array_equal(a.null_mi, c.null_mi)
    assert (a.random_state, a.n_shuffles, a.correction) == (3, 20, "qe+shuffle")
    # a Generator (or None) is turned into an int seed that reproduces the numbers
    g = mutual_information(x, y, correction="pt+shuffle", random_state=np.random.default_rng(1))
    again = mutual_information(x, y, correction="pt+shuffle", random_state=g.random_state)
    np.testing.assert_array_equal(g.mi, again.mi)
    fresh = mutual_information(x, y, random_state=None)
    assert isinstance(fresh.random_state, int)
    # the real pairing is not changed by the shuffles, and K = 0 skips the null
    z = mutual_information(x, y, n_shuffles=0)
    np.testing.assert_array_equal(z.mi, mutual_information(x, y).mi)
    assert np.all(np.isnan(z.null)) and np.all(np.isnan(z.null_sd)) and z.n_shuffles == 0
    one = mutual_information(x, y, n_shuffles=1)
    assert np.all(np.isfinite(one.null)) and np.all(np.isnan(one.null_sd))
    assert mutual_information(x, y, correction="panzeri-treves").correction == "pt"


def test_constant_units_have_zero_null(rng):
    x, y = _dependent(rng, 300, 4)
    x[:, 1] = 2.0
    y[:, 2] = 5.0
    for corr in ("pt+shuffle", "qe+shuffle"):
        res = mutual_information(x, y, bins=5, correction=corr)
        for key in ("mi", "normalized", "null", "null_sd", "null_mi", "h_x_corrected"):
            assert np.all(np.isfinite(getattr(res, key))), key
        np.testing.assert_array_equal(res.null[[1, 2]], 0.0)
        np.testing.assert_array_equal(res.normalized[[1, 2]], 0.0)


def test_sample_size_warning_rule():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2000, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 2000 samples >= 5 x 20 x 20: no warning
        ok = mutual_information(rng.normal(size=2000), y)
    assert ok.sample_size_ok and ok.warnings == () and ok.n_cells == 400
    with pytest.warns(NetphysWarning, match=r"1999 samples for 20 feature symbols x 20 "
                                            r"activation bins = 400 joint cells \(5 per cell"):
        low = mutual_information(rng.normal(size=1999), y[:1999])
    assert not low.sample_size_ok and len(low.warnings) == 1
    assert low.samples_per_cell == pytest.approx(1999 / 400)
    with pytest.warns(NetphysWarning, match=r"8000 joint cells"):
        corner = mutual_information(rng.normal(size=(2000, 2)), y)
    assert corner.n_cells == 8000
    # discrete: the labels that occur (not the range of the integer codes)
    lab = rng.choice([0, 10, 20], size=2000)
    d = mutual_information(lab, y, x_discrete=True)
    assert d.n_cells == 60 and d.x_bins == 3 and d.sample_size_ok
    assert d.to_xarray().attrs["warnings"] == []


def test_to_xarray_labels_and_attrs(rng):
    import pandas as pd

    x, y = _dependent(rng, 150, 3)
    res = mutual_information(x, y, bins=10, correction="pt+shuffle", n_shuffles=5, random_state=2)
    coords = pd.DataFrame({"layer": ["conv1"] * 3, "channel": [4, 7, 9], "row": [1, 2, 3],
                           "col": [0, 0, 1]}, index=[10, 11, 12])
    ds = res.to_xarray(unit_coords=coords)
    assert list(ds["channel"].values) == [4, 7, 9] and ds["layer"].dims == ("unit",)
    for key in ("null", "null_sd", "null_mi", "normalized"):
        np.testing.assert_array_equal(ds[key].values, getattr(res, key))
    assert ds.attrs["correction"] == "pt+shuffle" and ds.attrs["n_shuffles"] == 5
    assert ds.attrs["random_state"] == 2 and ds.attrs["bins"] == 10 and ds.attrs["x_bins"] == 10
    assert ds.attrs["n_samples"] == 150 and ds.attrs["sample_size_ok"] == 0
    assert ds.attrs["warnings"] == list(res.warnings) and len(res.warnings) == 1
    ds2 = res.to_xarray(unit_coords={"channel": np.arange(3)})
    assert list(ds2["channel"].values) == [0, 1, 2]
    with pytest.raises(NetphysError, match=r"'unit_coords' parameter of InformationResult\."
                                           r"to_xarray must be per-unit coordinates with 3 values"):
        res.to_xarray(unit_coords={"channel": np.arange(4)})
    with pytest.raises(NetphysError, match=r"'unit_coords' .* must be None, a pandas DataFrame"):
        res.to_xarray(unit_coords=[1, 2, 3])


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_shuffles=-1), r"^the 'n_shuffles' parameter of mutual_information must be an int >= 0, got -1$"),
    (dict(n_shuffles=2.5), r"'n_shuffles' .* must be an int >= 0, got 2\.5"),
    (dict(correction="pt+shuffle", n_shuffles=0),
     r"'n_shuffles' .* must be an int >= 1 with correction='pt\+shuffle', got 0; use n_shuffles=20"),
    (dict(random_state=-3), r"'random_state' parameter of mutual_information must be None, a "
                            r"non-negative int"),
    (dict(random_state="a"), r"'random_state' parameter"),
])
def test_new_parameter_errors(kwargs, match):
    with pytest.raises(NetphysError, match=match):
        mutual_information(_X, _Y, bins=5, **kwargs)


def test_qe_needs_eight_samples():
    with pytest.raises(NetphysError, match=r"'correction' .* other than 'qe' with fewer than 8 "
                                           r"samples, got 'qe'; use correction='pt'"):
        mutual_information(np.arange(6.0), np.arange(12.0).reshape(6, 2), bins=2, correction="qe")
    assert mutual_information(np.arange(8.0), np.arange(16.0).reshape(8, 2) % 3, bins=2,
                              correction="qe").mi.shape == (2,)


# ------------------------------------------------------------------------------------------
# corner coordinates and bins
# ------------------------------------------------------------------------------------------
def test_corner_coordinates_schemes():
    from netphys.stats import corner_coordinates

    t1 = np.array([170.0, 10.0, 30.0, 45.0, 0.0, 200.0, 60.0])
    t2 = np.array([10.0, 170.0, 30.0, 135.0, 90.0, -20.0, 150.0])
    lit = corner_coordinates(t1, t2, scheme="literal")
    np.testing.assert_allclose(lit[:, 0], t1 % 180)
    np.testing.assert_allclose(lit[:, 1], t2 % 180)
    can = corner_coordinates(t1, t2)
    np.testing.assert_allclose(can, [[10, 170], [10, 170], [30, 30], [45, 135], [0, 90],
                                     [20, 160], [60, 150]])
    dif = corner_coordinates(t1, t2, scheme="difference")
    # (separation in [0, 90], bisector of the acute angle in [0, 180))
    np.testing.assert_allclose(dif, [[20, 0], [20, 0], [0, 30], [90, 90], [90, 45], [40, 0],
                                     [90, 105]])
    # the unordered schemes do not depend on which peak is higher; the literal one does
    for scheme in ("canonical", "difference"):
        np.testing.assert_allclose(corner_coordinates(t2, t1, scheme=scheme),
                                   corner_coordinates(t1, t2, scheme=scheme))
    assert not np.allclose(corner_coordinates(t2, t1, scheme="literal"), lit)
    # one-to-one maps of the unordered pairs of the 1-degree grid
    a, b = np.meshgrid(np.arange(180.0), np.arange(180.0))
    keep = a <= b
    for scheme in ("canonical", "difference"):
        c = corner_coordinates(a[keep], b[keep], scheme=scheme)
        assert len({tuple(v) for v in np.round(c, 6)}) == keep.sum()
    # per-unit angles keep their shape and feed mutual_information as (n, u, 2)
    rng = np.random.default_rng(0)
    ta, tb = rng.uniform(0, 180, size=(2, 400, 5))
    c = corner_coordinates(ta, tb)
    assert c.shape == (400, 5, 2)
    res = mutual_information(c, rng.normal(size=(400, 5)), x_bins=5, correction="pt+shuffle")
    assert res.n_cells == 25 * 20


def test_corner_coordinates_errors():
    from netphys.stats import corner_coordinates

    with pytest.raises(NetphysError, match=r"'scheme' parameter of corner_coordinates must be one "
                                           r"of 'canonical', 'literal', 'difference', got 'polar'"):
        corner_coordinates(1.0, 2.0, scheme="polar")
    with pytest.raises(NetphysError, match=r"'theta2' .* shape of 'theta1' \(3,\)"):
        corner_coordinates(np.zeros(3), np.zeros(4))
    with pytest.raises(NetphysError, match=r"'theta1' parameter of corner_coordinates must be finite"):
        corner_coordinates([np.nan], [1.0])
    with pytest.raises(NetphysError, match=r"'theta2' .* real angles"):
        corner_coordinates([1.0], ["a"])


def test_corner_bins_rule_and_its_bias():
    from netphys.stats import corner_bins, corner_coordinates

    assert corner_bins(400) == 5  # 15 symbols x 20 bins = 300 <= 400 < 21 x 20
    assert corner_bins(400, scheme="literal") == corner_bins(400, scheme="difference") == 4
    assert corner_bins(10) == 2 and corner_bins(10 ** 6) == 20
    assert corner_bins(1500, bins=10) == 16  # 136 x 10 <= 1500 < 153 x 10
    sizes = [corner_bins(n) for n in range(20, 5000, 37)]
    assert sizes == sorted(sizes)
    with pytest.raises(NetphysError, match=r"'n_samples' parameter of corner_bins must be an int >= 1"):
        corner_bins(0)
    # on pure noise at N = 400, PT on the default coordinates keeps far less bias than on the
    # paper's 20 x 20 literal pair, and the shuffle-corrected estimate none
    rng = np.random.default_rng(3)
    ta, tb = rng.integers(0, 180, size=(2, 400, 150)).astype(float)
    y = rng.normal(size=(400, 150))
    lit = mutual_information(corner_coordinates(ta, tb, scheme="literal"), y, n_shuffles=0)
    default = corner_coordinates(ta, tb)
    pt = mutual_information(default, y, x_bins=corner_bins(400), n_shuffles=0)
    ps = mutual_information(default, y, x_bins=corner_bins(400), correction="pt+shuffle")
    assert lit.normalized.mean() > 0.3
    assert pt.normalized.mean() < 0.1
    assert abs(ps.normalized.mean()) < 0.003

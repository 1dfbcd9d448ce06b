"""Orientation selectivity: tuning arrays, gOSI closed forms, shuffle control, SPF dependence, plots."""
import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from netphys._validation import NetphysError  # noqa: E402
from netphys.stats.selectivity import (circular_range, gosi, orientation_vector,  # noqa: E402
                                       selective_fraction, sf_dependence, shuffled_gosi,
                                       tuning_array)
from netphys.stimuli.gratings import grating_images  # noqa: E402

ORI = np.arange(0, 180, 15.0)  # the paper's 12 orientations
PHASES = [0.0, 90.0, 180.0, 270.0]
SFS = [1.0, 2.0, 4.0]


def grid_coords(ori=ORI, phases=PHASES, sfs=SFS):
    return pd.DataFrame(list(itertools.product(ori, phases, sfs)), columns=["orientation", "phase", "sf"])


def make_tuning(vectors, ori=ORI, sfs=SFS, best_sf=1, signed=False):
    """Tuning array whose phase-max at ``sfs[best_sf]`` is exactly ``vectors`` (n_unit, n_ori).

    Other phases respond at 0.5x, other SFs at 0.3x (``signed``: 1 and 2 lower, for vectors with
    negative values): the gOSI vector is recovered exactly.
    """
    v = np.atleast_2d(np.asarray(vectors, float))
    if signed:
        ph = np.array([0.0, -1.0, -1.0, -1.0])
        sf = np.full(len(sfs), -2.0)
        sf[best_sf] = 0.0
        arr = v[:, :, None, None] + ph[None, None, :, None] + sf[None, None, None, :]
        return tuning_array(arr.reshape(v.shape[0], -1).T, grid_coords(ori, PHASES, sfs))
    ph_gain = np.array([1.0, 0.5, 0.5, 0.5])
    sf_gain = np.full(len(sfs), 0.3)
    sf_gain[best_sf] = 1.0
    arr = v[:, :, None, None] * ph_gain[None, None, :, None] * sf_gain[None, None, None, :]
    coords = grid_coords(ori, PHASES, sfs)
    return tuning_array(arr.reshape(v.shape[0], -1).T, coords)


def cos2(theta0, a=0.0, b=1.0, ori=ORI):
    return a + b * np.cos(np.deg2rad(ori - theta0)) ** 2


# ------------------------------------------------------------------------------- tuning_array
def test_tuning_array_reshapes_any_stimulus_order():
    rng = np.random.default_rng(0)
    coords = grid_coords()
    resp = rng.random((len(coords), 5))
    t = tuning_array(resp, coords)
    assert t.dims == ("unit", "orientation", "phase", "sf") and t.shape == (5, 12, 4, 3)
    perm = rng.permutation(len(coords))
    t2 = tuning_array(resp[perm], coords.iloc[perm].reset_index(drop=True))
    xr.testing.assert_equal(t, t2)
    row = coords.iloc[7]
    assert t.sel(unit=3, orientation=row.orientation, phase=row.phase, sf=row.sf) == resp[7, 3]


def test_tuning_array_from_dataarray_keeps_unit_coords():
    coords = grid_coords()
    n = len(coords)
    da = xr.DataArray(np.arange(n * 2, dtype=float).reshape(2, n).T, dims=("stimulus", "unit"),
                      coords={"unit": [10, 11], "layer": ("unit", ["conv1", "conv1"]),
                              "channel": ("unit", [0, 1]),
                              **{c: ("stimulus", coords[c].to_numpy()) for c in coords}},
                      attrs={"model": "toy"})
    t = tuning_array(da.transpose("unit", "stimulus"))  # coords read off the DataArray
    assert list(t["unit"].values) == [10, 11] and list(t["layer"].values) == ["conv1", "conv1"]
    assert t.attrs["model"] == "toy"
    g = gosi(t)
    assert list(g["channel"].values) == [0, 1]


# ------------------------------------------------------------------------------- closed forms
def test_cos2_gosi_is_exactly_one_half():
    # R_k = cos^2(theta_k - theta0) = 1/2 + cos(2(theta_k - theta0))/2. Over n = 12 orientations
    # 15 deg apart, sum_k e^{2i theta_k} = 0 and sum_k e^{4i theta_k} = 0, so
    # sum_k R_k e^{2i theta_k} = (n/4) e^{2i theta0} and sum_k R_k = n/2: gOSI = 1/2 exactly.
    t = make_tuning([cos2(30.0), cos2(37.0), cos2(150.0)])
    g = gosi(t)
    np.testing.assert_allclose(g["gosi"], 0.5, atol=1e-12)
    assert list(g["preferred_orientation"].values) == [30.0, 30.0, 150.0]  # grid argmax
    np.testing.assert_allclose(g["mean_orientation"], [30.0, 37.0, 150.0], atol=1e-9)  # exact
    np.testing.assert_allclose(g["preferred_sf"], 2.0)
    assert not g["zero_response"].any()


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (1.0, 1.0), (0.25, 3.0), (5.0, 0.5), (2.0, 0.0)])
def test_offset_cos2_closed_form(a, b):
    # R = a + b cos^2 = (a + b/2) + (b/2) cos 2(theta - theta0): resultant n b / 4, sum n (a + b/2)
    g = gosi(make_tuning([cos2(60.0, a, b)]))
    assert float(g["gosi"][0]) == pytest.approx((b / 4) / (a + b / 2), abs=1e-12)


def test_untuned_units_give_zero():
    rng = np.random.default_rng(1)
    noise = rng.random((2000, 12)).mean(axis=0)  # averaged noise -> nearly flat
    g = gosi(make_tuning([np.full(12, 3.0), noise]))
    assert float(g["gosi"][0]) == 0.0
    assert np.isnan(g["mean_orientation"][0])  # a flat tuning has no orientation
    assert float(g["gosi"][1]) < 0.02


def test_delta_tuning_gives_one():
    v = np.zeros(12)
    v[4] = 2.5
    g = gosi(make_tuning([v]))
    assert float(g["gosi"][0]) == pytest.approx(1.0)
    assert float(g["preferred_orientation"][0]) == 60.0


def test_all_zero_unit_is_flagged_not_nan():
    g = gosi(make_tuning([np.zeros(12), cos2(0.0)]))
    assert float(g["gosi"][0]) == 0.0 and not np.isnan(g["gosi"]).any()
    assert bool(g["zero_response"][0]) and not bool(g["zero_response"][1])
    assert np.isnan(g["preferred_orientation"][0]) and np.isnan(g["preferred_sf"][0])


@pytest.mark.parametrize("seed", range(5))
def test_gosi_in_unit_interval_for_random_nonnegative_tunings(seed):
    rng = np.random.default_rng(seed)
    n_ori = int(rng.integers(2, 20))
    ori = np.sort(rng.choice(np.arange(0, 180, 5.0), n_ori, replace=False))  # also unequal spacing
    dense = rng.gamma(0.5, size=(20, n_ori * 4 * 3))
    sparse = dense * (rng.random(dense.shape) < 0.1)
    t = tuning_array(np.concatenate([dense, sparse]).T, grid_coords(ori, PHASES, SFS))
    g = gosi(t)["gosi"].values
    assert np.all((g >= 0) & (g <= 1)) and np.all(np.isfinite(g))
    s = shuffled_gosi(t, seed, 2)["gosi"].values
    assert np.all((s >= 0) & (s <= 1))


def test_phase_max_and_best_sf_are_used():
    # the tuned SPF has the largest response; a weaker SPF carries an untuned response
    v = np.zeros((1, 12, 4, 3))
    v[0, :, 2, 0] = cos2(90.0)  # tuned, peak 1, at phase 180 only
    v[0, :, :, 2] = 0.6  # flat but weaker
    t = tuning_array(v.reshape(1, -1).T, grid_coords())
    g = gosi(t)
    assert float(g["gosi"][0]) == pytest.approx(0.5)
    assert float(g["preferred_sf"][0]) == 1.0 and float(g["preferred_orientation"][0]) == 90.0
    vec = orientation_vector(t)
    assert vec.dims == ("unit", "orientation")
    np.testing.assert_allclose(vec.values[0], cos2(90.0))


# ------------------------------------------------------------------------------- negative policy
def test_negative_policies():
    v = cos2(45.0, a=-0.5, b=2.0)  # pre-activation-like: negative away from 45 deg
    t = make_tuning([v], signed=True)
    rect = gosi(t)  # default: rectify == analysing ReLU(v)
    ref = gosi(make_tuning([np.maximum(v, 0)]))
    assert float(rect["gosi"][0]) == pytest.approx(float(ref["gosi"][0]))
    assert 0.5 < float(rect["gosi"][0]) <= 1.0 and float(rect["preferred_orientation"][0]) == 45.0
    # shift subtracts the unit's minimum: a + b cos^2 -> b cos^2 -> exactly 0.5 for any offset
    assert float(gosi(t, negative="shift")["gosi"][0]) == pytest.approx(0.5)
    assert float(gosi(make_tuning([cos2(0, 7.0, 1.0)]), negative="shift")["gosi"][0]) \
        == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"the 'tuning' parameter of gosi must be non-negative "
                                         r"responses when negative='raise', got '144 negative"):
        gosi(make_tuning([np.full(12, -1.0)], signed=True), negative="raise")
    # all-negative unit under rectify -> silent -> flagged, gOSI 0
    g = gosi(make_tuning([np.full(12, -1.0)], signed=True))
    assert bool(g["zero_response"][0]) and float(g["gosi"][0]) == 0.0
    with pytest.raises(ValueError, match=r"'negative' parameter of gosi must be one of 'rectify', "
                                         r"'shift', 'raise', got 'clip'"):
        gosi(t, negative="clip")


# ------------------------------------------------------------------------------- shuffle control
def test_shuffle_control_lowers_gosi_of_tuned_units():
    rng = np.random.default_rng(3)
    vec = np.array([cos2(th) ** 4 for th in rng.choice(ORI, 30)])  # sharply tuned
    t = make_tuning(vec)
    g = gosi(t)["gosi"]
    s = shuffled_gosi(t, random_state=0, n_shuffles=4)
    assert s["gosi"].dims == ("shuffle", "unit") and s.sizes["shuffle"] == 4
    assert float(s["gosi"].mean()) < float(g.mean()) - 0.3
    assert selective_fraction(g) == 1.0 and float(selective_fraction(s).mean()) < 0.5
    # reproducible, seed-dependent, shared-permutation variant
    xr.testing.assert_equal(s, shuffled_gosi(t, random_state=0, n_shuffles=4))
    assert not np.allclose(s["gosi"], shuffled_gosi(t, random_state=1, n_shuffles=4)["gosi"])
    shared = shuffled_gosi(t, random_state=np.random.default_rng(5), independent=False)
    assert shared.sizes["shuffle"] == 1 and shared.attrs["independent"] is False


def test_shuffle_keeps_each_units_values():
    # the control permutes each unit's own matrix: its largest response is unchanged
    t = make_tuning([cos2(30.0), cos2(90.0, 1.0)])
    s = shuffled_gosi(t, random_state=0, n_shuffles=3)
    peak = t.max(dim=("orientation", "phase", "sf")).values
    np.testing.assert_allclose(s["peak_response"].values, np.broadcast_to(peak, (3, 2)))


# ------------------------------------------------------------------------------- selective fraction
def test_selective_fraction():
    g = xr.DataArray([0.1, 0.33, 0.34, 0.9], dims="unit")
    assert selective_fraction(g) == 0.5  # strictly greater than 0.33
    assert selective_fraction(g, threshold=0.0) == 1.0
    assert selective_fraction([0.5, 0.2]) == 0.5
    ds = gosi(make_tuning([cos2(0.0), np.ones(12)]))
    assert selective_fraction(ds) == 0.5
    with pytest.raises(ValueError, match=r"the 'threshold' parameter of selective_fraction must be "
                                         r"a number in \[0, 1\], got 33"):
        selective_fraction(g, threshold=33)
    with pytest.raises(ValueError, match=r"'gosi' parameter of selective_fraction must be finite"):
        selective_fraction(np.array([0.2, np.nan]))


# ------------------------------------------------------------------------------- SPF dependence
def _sf_unit(prefs, peaks, ori=ORI):
    """One unit whose tuning at SF j is peaks[j] * cos^2(theta - prefs[j])**8 (max over phase)."""
    sfs = np.arange(1.0, len(prefs) + 1)
    arr = np.stack([p * cos2(th, ori=ori) ** 8 for th, p in zip(prefs, peaks)], axis=-1)  # (ori, sf)
    arr = np.repeat(arr[:, None, :], 4, axis=1) * np.array([1, 0.2, 0.2, 0.2])[None, :, None]
    coords = grid_coords(ori, PHASES, sfs)
    return tuning_array(arr.reshape(1, -1).T, coords)


@pytest.mark.parametrize("prefs,peaks,expected,n_sf", [
    ([30, 30, 30, 30], [1.0, 0.9, 0.8, 0.6], 0.0, 4),      # ideal unit: range 0
    ([30, 30, 45, 60], [1.0, 0.9, 0.8, 0.4], 15.0, 3),     # 60 at 40% of the max is ignored
    ([30, 30, 45, 60], [1.0, 0.9, 0.8, 0.6], 30.0, 4),
    ([165, 0, 15, 90], [1.0, 0.7, 0.6, 0.1], 30.0, 3),     # circular: 165 -> 15 spans 30, not 150
    ([0, 90], [1.0, 0.99], 90.0, 2),
])
def test_sf_dependence(prefs, peaks, expected, n_sf):
    d = sf_dependence(_sf_unit(prefs, peaks))
    assert float(d["orientation_range"][0]) == pytest.approx(expected)
    assert int(d["n_sf"][0]) == n_sf
    assert d["preferred_orientation_by_sf"].dims == ("unit", "sf")


def test_sf_dependence_baseline_and_zero_unit():
    t = _sf_unit([30, 30, 60], [1.0, 0.9, 0.3])
    assert float(sf_dependence(t)["orientation_range"][0]) == 0.0
    # paper text: threshold 0.5 * max = 0.5 keeps the 60-deg SPF (0.6); the reference code's
    # min + 0.5 (max - min) = 0.8 over the per-SPF peaks drops it
    t = _sf_unit([30, 30, 60], [1.0, 0.9, 0.6])
    assert float(sf_dependence(t)["orientation_range"][0]) == 30.0
    assert float(sf_dependence(t, baseline="min")["orientation_range"][0]) == 0.0
    t = _sf_unit([30, 45, 60], [1.0, 0.7, 0.2])  # "min": threshold 0.6 keeps 0.7 -> 30..45
    assert float(sf_dependence(t, baseline="min")["orientation_range"][0]) == 15.0
    assert float(sf_dependence(t, peak_fraction=0.0)["orientation_range"][0]) == 30.0
    zero = sf_dependence(make_tuning([np.zeros(12)]))
    assert np.isnan(zero["orientation_range"][0]) and int(zero["n_sf"][0]) == 0
    with pytest.raises(ValueError, match=r"the 'peak_fraction' parameter of sf_dependence must be a "
                                         r"number in \[0, 1\), got 1.5"):
        sf_dependence(t, peak_fraction=1.5)


def test_circular_range():
    assert circular_range([10]) == 0.0
    assert circular_range([165, 0, 15]) == 30.0
    assert circular_range([0, 60, 120]) == 120.0
    assert circular_range([200, 30]) == 10.0  # 200 == 20 on the 180-deg circle


# ------------------------------------------------------------------------------- oriented filters
SIZE = 33  # odd: the centre unit sits on the image centre
FILTER_SFS = [2.75, 4.125, 5.5, 8.25]  # periods 12, 8, 6 and 4 px


def _filter_tuning(kernel):
    imgs = grating_images(ORI, PHASES, FILTER_SFS, SIZE)
    x = torch.tensor(imgs.reshape(-1, 1, SIZE, SIZE) - 0.5, dtype=torch.float32)
    k = kernel.shape[0]
    conv = torch.nn.Conv2d(1, 1, k, padding=k // 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(kernel[None, None], dtype=torch.float32))
        r = torch.relu(conv(x))[:, 0, SIZE // 2, SIZE // 2].numpy()
    return tuning_array(r[:, None], grid_coords(ORI, PHASES, FILTER_SFS))


def _gabor(angle_deg, period=6.0, sigma=2.0, k=9):
    i, j = np.mgrid[0:k, 0:k] - k // 2  # rows, columns
    a = np.deg2rad(angle_deg)
    g = np.exp(-(i ** 2 + j ** 2) / (2 * sigma ** 2)) * np.cos(
        2 * np.pi / period * (-i * np.sin(a) + j * np.cos(a)))
    return g - g.mean()  # no response to mean luminance


@pytest.mark.parametrize("angle", [30.0, 60.0, 135.0])
def test_rectified_gabor_peaks_at_its_orientation(angle):
    t = _filter_tuning(_gabor(angle))
    g = gosi(t)
    assert float(g["preferred_orientation"][0]) == angle
    assert float(g["mean_orientation"][0]) == pytest.approx(angle, abs=0.5)
    assert float(g["gosi"][0]) > 0.5
    assert float(g["preferred_sf"][0]) == 5.5  # the Gabor's own frequency (period 6 px)
    # half the responses are rectified to 0 (sparse), so the control stays well above 0
    assert float(shuffled_gosi(t, 0, 50)["gosi"].mean()) < float(g["gosi"][0]) - 0.15


@pytest.mark.parametrize("kernel,angle", [
    (np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float), 0.0),    # d/dx: vertical edges
    (np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], float), 90.0),   # d/dy: horizontal edges
    (np.array([[0, 1, 2], [-1, 0, 1], [-2, -1, 0]], float), 45.0),   # brighter towards top-right
])
def test_edge_filters_pin_the_on_screen_convention(kernel, angle):
    # orientation = direction of the luminance gradient, counter-clockwise from screen-right
    g = gosi(_filter_tuning(kernel))
    assert float(g["preferred_orientation"][0]) == angle
    assert float(g["gosi"][0]) > 0.2


# ------------------------------------------------------------------------------- errors
def test_tuning_array_errors():
    coords = grid_coords()
    resp = np.ones((len(coords), 3))
    with pytest.raises(ValueError, match=r"the 'stimuli_coords' parameter of tuning_array must be a "
                                         r"table with columns 'orientation', 'phase' and 'sf', got "
                                         r"\"columns \['orientation', 'phase'\]\"; missing \['sf'\]"):
        tuning_array(resp, coords.drop(columns="sf"))
    with pytest.raises(ValueError, match=r"'stimuli_coords' parameter of tuning_array must be one "
                                         r"row per stimulus \(143 rows"):
        tuning_array(resp[:-1], coords)
    with pytest.raises(ValueError, match=r"'responses' parameter of tuning_array must be a 2-D "
                                         r"\(stimulus x unit\) array, got 'array of shape \(144,\)'"):
        tuning_array(resp[:, 0], coords)
    bad = resp.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"the 'responses' parameter of tuning_array must be finite "
                                         r"\(no NaN or inf\), got '1 non-finite value"):
        tuning_array(bad, coords)
    two = pd.concat([coords.assign(contrast=1.0), coords.assign(contrast=0.5)], ignore_index=True)
    with pytest.raises(ValueError, match=r"must be a complete grid with each \(orientation, phase, "
                                         r"sf\) exactly once .* 144 repeated combination\(s\)'; select "
                                         r"one contrast"):
        tuning_array(np.ones((len(two), 3)), two)
    with pytest.raises(ValueError, match=r"'stimuli_coords' parameter of tuning_array must be given"):
        tuning_array(resp)
    with pytest.raises(ValueError, match=r"'responses' parameter of tuning_array must be a DataArray "
                                         r"with dims \('stimulus', 'unit'\)"):
        tuning_array(xr.DataArray(resp, dims=("image", "unit")), coords)


def test_stats_input_errors():
    t = make_tuning([cos2(0.0)])
    with pytest.raises(ValueError, match=r"the 'tuning' parameter of gosi must be an xarray.DataArray "
                                         r"with dims .* got 'ndarray'; build it with tuning_array"):
        gosi(t.values)
    with pytest.raises(ValueError, match=r"'tuning' parameter of gosi must be .* missing \['phase'\]"):
        gosi(t.isel(phase=0))
    nan = t.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"the 'tuning' parameter of gosi must be finite"):
        gosi(nan)
    with pytest.raises(ValueError, match=r"the 'n_shuffles' parameter of shuffled_gosi must be an "
                                         r"int >= 1, got 0"):
        shuffled_gosi(t, 0, n_shuffles=0)
    with pytest.raises(ValueError, match=r"the 'random_state' parameter of shuffled_gosi must be"):
        shuffled_gosi(t, random_state="seed")


# ------------------------------------------------------------------------------- plots
def test_plot_tuning_curves_returns_figure():
    import matplotlib.pyplot as plt

    from netphys.plotting.selectivity import plot_tuning_curves

    t = make_tuning([cos2(th) for th in (0, 45, 90)])
    fig = plot_tuning_curves(t)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert "gOSI = 0.50" in fig.axes[0].get_title()
    assert isinstance(plot_tuning_curves(t, units=[1], polar=True), Figure)
    f, ax = plt.subplots()
    assert plot_tuning_curves(t, units=[0, 2], ax=ax) is f
    assert len(ax.get_lines()) == 2 and ax.get_legend() is not None
    with pytest.raises(ValueError, match=r"the 'units' parameter of plot_tuning_curves must be an "
                                         r"int in \[0, 2\], got 5"):
        plot_tuning_curves(t, units=[5])
    with pytest.raises(ValueError, match=r"the 'ax' parameter of plot_tuning_curves must be polar Axes"):
        plot_tuning_curves(t, units=[0], ax=ax, polar=True)
    plt.close("all")


def test_plot_gosi_histograms_returns_figure():
    import matplotlib.pyplot as plt

    from netphys.plotting.selectivity import plot_gosi_histograms

    rng = np.random.default_rng(0)
    tun = {f"conv{i}": make_tuning(rng.gamma(1.0, size=(20, 12)) ** (i + 1)) for i in range(3)}
    g = {k: gosi(v) for k, v in tun.items()}
    s = {k: shuffled_gosi(v, 0, 3) for k, v in tun.items()}
    fig = plot_gosi_histograms(g, s, threshold=0.33)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert fig.axes[0].get_xlabel() == "gOSI" and fig.axes[0].get_title().startswith("conv0")
    f, axes = plt.subplots(1, 3)
    assert plot_gosi_histograms(g, None, ax=axes, density=True) is f
    # one labelled result split by its 'layer' unit coordinate
    both = xr.concat([g["conv0"]["gosi"].assign_coords(layer=("unit", ["a"] * 20)),
                      g["conv1"]["gosi"].assign_coords(layer=("unit", ["b"] * 20))], dim="unit")
    assert len(plot_gosi_histograms(both).axes) == 2
    with pytest.raises(ValueError, match=r"the 'shuffled_by_layer' parameter of plot_gosi_histograms "
                                         r"must be the same layers as gosi_by_layer"):
        plot_gosi_histograms(g, {"conv0": s["conv0"]})
    plt.close("all")


# ----------------------------------------------------------------------------- per-layer tables, spearman
def _gosi_result():
    import xarray as xr

    g = np.array([0.1, 0.5, 0.9, 0.0, 0.2, 0.4])
    return xr.Dataset({"gosi": ("unit", g), "zero_response": ("unit", np.array([0, 0, 0, 1, 0, 0], bool))},
                      coords={"layer": ("unit", np.array(["a", "a", "a", "b", "b", "b"]))})


def test_gosi_by_layer_known_answers():
    from netphys.stats.selectivity import gosi_by_layer, gosi_by_layer_with_control

    t = gosi_by_layer(_gosi_result())
    assert list(t.index) == ["a", "b"]
    assert t.loc["a", "mean_gosi"] == pytest.approx(0.5) and t.loc["a", "median_gosi"] == pytest.approx(0.5)
    assert t.loc["a", "frac_selective"] == pytest.approx(2 / 3) and t.loc["b", "frac_selective"] == pytest.approx(1 / 3)
    assert list(t["n_silent"]) == [0, 1] and list(t["n_units"]) == [3, 3]
    assert gosi_by_layer(_gosi_result(), ["b"], threshold=0.1).loc["b", "frac_selective"] == pytest.approx(2 / 3)
    shuf = _gosi_result().assign(gosi=("unit", np.zeros(6))).expand_dims(shuffle=[0])
    both = gosi_by_layer_with_control(_gosi_result(), shuf)
    assert list(both["mean_gosi_shuffled"]) == [0.0, 0.0] and list(both["frac_selective_shuffled"]) == [0.0, 0.0]
    with pytest.raises(NetphysError, match=r"the 'layers' parameter of gosi_by_layer must be layers of the result"):
        gosi_by_layer(_gosi_result(), ["c"])


def test_channel_gosi_keeps_unit_coords():
    from netphys.stats.selectivity import channel_gosi

    theta = np.repeat([0.0, 45.0, 90.0, 135.0], 2)
    resp = np.stack([np.cos(np.deg2rad(theta - 0)) ** 2, np.ones(8)], axis=1)  # a cos^2 unit and a flat one
    import xarray as xr

    da = xr.DataArray(resp, dims=("stimulus", "unit"),
                      coords={"orientation": ("stimulus", theta), "phase": ("stimulus", np.tile([0.0, 90.0], 4)),
                              "sf": ("stimulus", np.ones(8)), "layer": ("unit", ["x", "x"]), "channel": ("unit", [0, 1])})
    g = channel_gosi(da)
    np.testing.assert_allclose(g["gosi"].values, [0.5, 0.0], atol=1e-12)  # (b/4) / (a + b/2) with a = 0
    assert list(g["channel"].values) == [0, 1] and list(g["layer"].values) == ["x", "x"]


def test_spearman():
    from netphys.stats.selectivity import spearman

    r, p = spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 100])
    assert r == pytest.approx(1.0) and p < 0.05
    assert spearman([1, 2, 3, np.nan, 5], [5, 4, 3, 0, 1])[0] == pytest.approx(-1.0)  # NaN pair dropped
    assert all(np.isnan(spearman([1, 1, 1, 1], [1, 2, 3, 4])))  # constant side: undefined
    assert all(np.isnan(spearman([1, 2], [2, 1])))  # fewer than 3 pairs


# ----------------------------------------------------------------------------- activity (stats.activity)
def _rec(values, layers):
    import xarray as xr

    values = np.asarray(values, float)
    return xr.DataArray(values, dims=("stimulus", "unit"),
                        coords={"layer": ("unit", layers), "depth": ("unit", [1] * len(layers)),
                                "kind": ("unit", ["conv"] * len(layers))})


def test_lifetime_sparseness_known_answers():
    from netphys.stats.activity import lifetime_sparseness

    n = 5
    one_hot = np.zeros(n)
    one_hot[2] = 4.0
    rec = _rec(np.stack([np.full(n, 3.0), one_hot, np.zeros(n), -np.arange(n, dtype=float)], axis=1),
               ["a", "a", "b", "b"])
    s = lifetime_sparseness(rec)
    np.testing.assert_allclose(s.values, [0.0, 1 - 1 / n, 0.0, 0.0], atol=1e-12)  # negatives rectified -> silent
    assert list(s["layer"].values) == ["a", "a", "b", "b"]
    np.testing.assert_allclose(lifetime_sparseness(rec, normalise=True).values, [0, 1, 0, 0], atol=1e-12)
    # two equal responses among four stimuli: a = (2r/4)^2 / (2r^2/4) = 1/2
    half = _rec(np.array([[1.0], [1.0], [0.0], [0.0]]), ["a"])
    assert float(lifetime_sparseness(half)[0]) == pytest.approx(0.5)
    with pytest.raises(NetphysError, match=r"the 'recording' parameter of lifetime_sparseness must be an "
                                           r"xarray.DataArray with dims \('stimulus', 'unit'\)"):
        lifetime_sparseness(np.ones((3, 2)))


def test_activation_statistics_per_layer():
    from netphys.stats.activity import activation_statistics

    rec = _rec([[1.0, -1.0, 2.0], [3.0, -1.0, 2.0]], ["a", "a", "b"])
    t = activation_statistics(rec)
    assert list(t.index) == ["a", "b"] and list(t["n_units"]) == [2, 1]
    assert t.loc["a", "mean"] == pytest.approx(0.5) and t.loc["a", "frac_positive"] == pytest.approx(0.5)
    assert t.loc["a", "sd"] == pytest.approx(0.5)  # SDs over stimuli: 1 and 0
    assert t.loc["b", "sparseness"] == pytest.approx(0.0) and t.loc["a", "kind"] == "conv"

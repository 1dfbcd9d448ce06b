"""Interventions: the reference CNN, unit ablation (hooks restored), shift invariance, executors."""
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from conftest import no_hooks_left  # noqa: E402
from netphys._validation import NetphysError  # noqa: E402
from netphys.experiments.parallel import get_executor  # noqa: E402
from netphys.interventions import (ablate_units, cv_by_layer, layer_channels, shift_images,  # noqa: E402
                                   shift_invariance, split_by_score)
from netphys.interventions.invariance import _unit_cv  # noqa: E402
from netphys.models import list_layers  # noqa: E402
from netphys.models.cifar import feature_map_sizes, reference_cnn  # noqa: E402
from netphys.recording import record  # noqa: E402
from netphys.stimuli import StimulusSet  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cnn():
    return reference_cnn(num_classes=3, in_size=32, random_state=0)


@pytest.fixture(scope="module")
def stim():
    imgs = np.random.default_rng(1).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    return StimulusSet.from_arrays(imgs, labels=np.arange(12) % 3)


# ----------------------------------------------------------------------------- reference CNN
def test_reference_cnn_layers_and_shapes(cnn):
    df = list_layers(cnn)
    assert df["alias"].tolist() == ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc7", "fc8"]
    assert df["type"].tolist()[:6] == ["Conv2d"] * 6
    assert df["activation"].notna().sum() == 7  # every hidden layer has its ReLU; the read-out none
    assert feature_map_sizes(32) == [30, 14, 12, 5, 3, 1]
    channels = [layer_channels(cnn, l) for l in df["alias"]]
    assert channels == [32, 32, 64, 64, 128, 128, 512, 3]
    with torch.no_grad():
        assert cnn(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    assert not cnn.training and cnn.netphys.input_size == 32


def test_reference_cnn_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = reference_cnn(random_state=3), reference_cnn(random_state=3)
    c = reference_cnn(random_state=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


@pytest.mark.parametrize("kw, match", [
    ({"in_size": 16}, r"the 'in_size' parameter of reference_cnn must be an int >= 29 .*got 16"),
    ({"num_classes": 0}, r"the 'num_classes' parameter of reference_cnn must be an int >= 1, got 0"),
    ({"random_state": -1}, r"the 'random_state' parameter of reference_cnn must be a non-negative int seed"),
])
def test_reference_cnn_errors(kw, match):
    with pytest.raises(NetphysError, match=match):
        reference_cnn(**kw)


# ----------------------------------------------------------------------------- ablation
def test_ablation_clamps_post_channels_and_restores(cnn, stim):
    intact = record(cnn, stim, layers=["conv2"], units="all", site="post")
    with ablate_units(cnn, "conv2", [0, 5, 7]) as m:
        assert m is cnn
        abl = record(cnn, stim, layers=["conv2"], units="all", site="post")
    after = record(cnn, stim, layers=["conv2"], units="all", site="post")
    ch = abl["channel"].values
    hit = np.isin(ch, [0, 5, 7])
    assert np.all(abl.values[:, hit] == 0)
    np.testing.assert_array_equal(abl.values[:, ~hit], intact.values[:, ~hit])
    np.testing.assert_array_equal(after.values, intact.values)
    assert no_hooks_left(cnn)


def test_ablation_changes_downstream_output_and_is_transient(cnn):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = cnn(x)
        with ablate_units(cnn, "fc7", np.arange(512) < 256):  # boolean mask
            b = cnn(x)
        with ablate_units(cnn, "conv1", [1, 2], site="pre", value=3.0):
            c = cnn(x)
        d = cnn(x)
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    assert torch.equal(a, d)
    assert no_hooks_left(cnn)


def test_no_hook_survives_an_exception(cnn):
    with pytest.raises(RuntimeError, match="boom"):
        with ablate_units(cnn, "conv3", [0]):
            assert not no_hooks_left(cnn)
            raise RuntimeError("boom")
    assert no_hooks_left(cnn)


def test_ablation_with_inplace_relu(small_vgg):
    """VGG's in-place ReLU cannot undo the clamp (the hook returns a copy)."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with ablate_units(small_vgg, "conv1_1", list(range(small_vgg.features[0].out_channels))), torch.no_grad():
        out = {}
        h = small_vgg.features[2].register_forward_hook(lambda m, i, o: out.setdefault("x", o.clone()))
        try:
            small_vgg(x)
        finally:
            h.remove()
    assert torch.count_nonzero(out["x"]) == 0
    assert no_hooks_left(small_vgg)


def test_empty_ablation_is_a_no_op(cnn):
    with ablate_units(cnn, "conv4", []):
        assert no_hooks_left(cnn)


@pytest.mark.parametrize("kw, match", [
    ({"layer": "conv9", "channels": [0]}, r"the 'layers' parameter of ablate_units names an unknown layer"),
    ({"layer": "conv1", "channels": [32]}, r"the 'channels' parameter of ablate_units must be channel "
                                           r"indices in \[0, 31\], got \[32\]"),
    ({"layer": "conv1", "channels": [1, 1]}, r"must be distinct channel indices"),
    ({"layer": "conv1", "channels": [0.5]}, r"must be integer channel indices"),
    ({"layer": "conv1", "channels": [0], "site": "mid"}, r"the 'site' parameter of ablate_units must be one of"),
    ({"layer": "conv1", "channels": [0], "value": float("nan")}, r"the 'value' parameter .* a finite number"),
])
def test_ablation_errors(cnn, kw, match):
    with pytest.raises(NetphysError, match=match):
        with ablate_units(cnn, **kw):
            pass
    assert no_hooks_left(cnn)


def test_split_by_score():
    top, bottom = split_by_score([0.9, 0.1, 0.5, 0.5, 0.7, 0.0])
    assert top.tolist() == [0, 2, 4] and bottom.tolist() == [1, 3, 5]
    top, bottom = split_by_score(np.zeros(5))  # ties: by index, still disjoint
    assert len(top) == len(bottom) == 2 and not set(top) & set(bottom)
    with pytest.raises(NetphysError,
                       match=r"the 'fraction' parameter of split_by_score must be a number in \(0, 0.5\]"):
        split_by_score([1, 2, 3], fraction=0.8)
    with pytest.raises(NetphysError, match="finite values"):
        split_by_score([1, np.nan])


# ----------------------------------------------------------------------------- shifts
def test_shift_images_known_answer():
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    right = shift_images(x, 1, 0)
    np.testing.assert_array_equal(right[0], [[0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10], [12, 12, 13, 14]])
    down = shift_images(x, 0, 2, fill="constant")
    np.testing.assert_array_equal(down[0], [[0] * 4, [0] * 4, [0, 1, 2, 3], [4, 5, 6, 7]])
    t = torch.from_numpy(np.stack([x[0], x[0]]))[:, None]  # (2, 1, 4, 4)
    out = shift_images(t, torch.tensor([0, -1]), 0)
    assert out.dtype == torch.uint8 and out.shape == t.shape
    np.testing.assert_array_equal(out[0, 0].numpy(), x[0])
    np.testing.assert_array_equal(out[1, 0, 0].numpy(), [1, 2, 3, 3])
    with pytest.raises(NetphysError, match=r"the 'fill' parameter of shift_images must be one of"):
        shift_images(x, 1, 1, fill="wrap")


def test_unit_cv_closed_form():
    base = np.array([[1.0, 0.0], [0.95, 0.0], [0.1, 0.0]])
    moved = np.array([[3.0, 1.0], [0.95, 1.0], [5.0, 1.0]])
    cv, n = _unit_cv(base, moved, 0.9)
    # unit 0: images 0 and 1 pass (> 0.9); CV |a-b|/(a+b) = 0.5 and 0 -> 0.25. unit 1 never active.
    assert cv[0] == pytest.approx(0.25) and n.tolist() == [2, 0] and np.isnan(cv[1])


class _Pool(nn.Module):
    """conv -> ReLU -> global average pool: the pooled units see the whole image, so a shift only
    changes them through the border, while a single conv unit sees other pixels altogether."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def test_shift_invariance_toy_model(stim):
    model = _Pool()
    res = shift_invariance(model, stim, layers=["conv1", "pool"], units=4, shift=0.1, random_state=0)
    assert res["cv"].dims == ("unit", "direction") and list(res["direction"].values) == \
        ["horizontal", "vertical", "both"]
    assert res.attrs["shift_px"] == 3
    summary = cv_by_layer(res)
    assert set(summary.columns) == {"layer", "direction", "mean", "sem", "n_units"}
    conv = summary[(summary.layer == "conv1") & (summary.direction == "all")]["mean"].item()
    pool = summary[(summary.layer == "pool") & (summary.direction == "all")]["mean"].item()
    assert 0 <= pool < 0.5 * conv  # pooled units are far more shift-invariant than single conv units
    assert no_hooks_left(model)
    # identical results for the same unit table
    again = shift_invariance(model, stim, units=pd.DataFrame({c: res[c].values for c in
                                                              ("layer", "channel", "row", "col")}))
    np.testing.assert_allclose(again["cv"].values, res["cv"].values)
    with pytest.raises(NetphysError, match=r"the 'shift' parameter of shift_invariance must be a fraction"):
        shift_invariance(model, stim, shift=0)
    with pytest.raises(NetphysError, match=r"the 'directions' parameter of shift_invariance must be one of"):
        shift_invariance(model, stim, directions=("up",))


def test_shift_invariance_of_ablated_network(cnn, stim):
    intact = shift_invariance(cnn, stim, layers=["conv2", "fc7"], units=6, random_state=0)
    table = pd.DataFrame({c: intact[c].values for c in ("layer", "channel", "row", "col")})
    with ablate_units(cnn, "conv2", list(range(32))):
        abl = shift_invariance(cnn, stim, units=table)
    # every conv2 channel silenced: no image drives those units, so their CV is undefined
    assert np.all(np.isnan(abl["cv"].values[abl["layer"].values == "conv2"]))
    assert no_hooks_left(cnn)


# ----------------------------------------------------------------------------- executors
def test_executors_keep_order():
    items = list(range(7))
    with get_executor("serial") as ex:
        assert ex.map(math.factorial, items) == [math.factorial(i) for i in items]
    # the process back-end is exercised by the orientation sweep (tests/test_orientation.py)


def test_executor_errors():
    with pytest.raises(NetphysError, match=r"the 'backend' parameter of get_executor must be one of 'serial', "
                                           r"'process', 'ray', got 'mpi'"):
        get_executor("mpi")
    with pytest.raises(NetphysError, match=r"the 'max_workers' parameter of get_executor must be an int >= 1"):
        get_executor("process", 0)
    for backend, pkg in (("ray", "ray"),):
        try:
            __import__(pkg)
        except ImportError:
            with pytest.raises(NetphysError, match=rf"backend='{backend}' needs .* pip install"):
                get_executor(backend)


# ----------------------------------------------------------------------------- effect tables
def _scores(layer, n, values, **extra):
    import xarray as xr

    return xr.Dataset({"gosi": ("unit", np.asarray(values, float)), **{k: ("unit", v) for k, v in extra.items()}},
                      coords={"layer": ("unit", np.full(n, layer)), "channel": ("unit", np.arange(n))})


def test_ablation_effects_known_answer(stim):
    """fc8 reads only fc7 channels 256-511 (the top-scored half): ablating the bottom half changes nothing."""
    from netphys.interventions import ablation_effects

    model = reference_cnn(num_classes=3, in_size=32, random_state=0)
    with torch.no_grad():
        model.classifier[3].weight[:, :256] = 0
    scores = _scores("fc7", 512, np.arange(512.0) / 512, peak_response=np.ones(512),
                     zero_response=np.arange(512) < 10)
    abl = ablation_effects(model, stim, scores, ["fc7"], n_random=2, random_state=0)
    row = abl.loc["fc7"]
    assert row["d_bottom"] == 0.0 and row["d_acc_bottom"] == 0.0 and row["n_ablated"] == 256
    assert row["d_top"] != 0.0 and np.isfinite(row["d_random"]) and np.isfinite(row["d_random_sd"])
    assert row["marked"] == bool(row["d_top"] > 0)  # d_bottom = 0: top > 2 x bottom iff d_top > 0
    assert row["gosi_top"] == pytest.approx(np.arange(256, 512).mean() / 512)
    assert (row["silent_top"], row["silent_bottom"]) == (0, 10) and row["peak_top"] == 1.0
    assert no_hooks_left(model)
    # any score name; groups without peak/zero columns
    plain = _scores("fc7", 512, np.arange(512.0)).rename(gosi="rank")
    t = ablation_effects(model, stim, plain, ["fc7"], score="rank")
    assert {"rank_top", "rank_bottom"} <= set(t.columns) and "peak_top" not in t.columns
    assert t.loc["fc7", "d_bottom"] == 0.0
    with pytest.raises(NetphysError, match=r"the 'scores' parameter of ablation_effects must be an xarray.Dataset "
                                           r"with a 'gosi' variable"):
        ablation_effects(model, stim, plain, ["fc7"])
    with pytest.raises(NetphysError, match=r"the 'layers' parameter of ablation_effects must be layers of the "
                                           r"scores \(\['fc7'\]\), got 'conv1'"):
        ablation_effects(model, stim, plain, ["conv1"], score="rank")


def test_invariance_effects_below_the_ablated_layer_unchanged(cnn, stim):
    from netphys.interventions import invariance_effects

    scores = _scores("conv2", 32, np.linspace(0, 1, 32))
    summary, tests, per_unit = invariance_effects(cnn, stim, scores, ["conv1", "conv2", "conv3"], ["conv2"],
                                                  units=6, random_state=0)
    assert set(per_unit) == {"intact", "conv2 top-gOSI ablated", "conv2 bottom-gOSI ablated"}
    assert set(summary["network"]) == set(per_unit) and set(tests["group"]) == {"top", "bottom"}
    below = tests[tests["layer"] == "conv1"]
    np.testing.assert_array_equal(below["cv_ablated"], below["cv_intact"])
    _, t2, _ = invariance_effects(cnn, stim, scores, ["conv3"], ["conv2"], units=6, control=False)
    assert list(t2["group"]) == ["top"]
    assert no_hooks_left(cnn)

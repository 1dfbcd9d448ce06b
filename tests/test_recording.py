"""The recording rig: known answers, in-place ReLUs, hooks, unit sampling, errors (unit + integration)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from netphys._validation import NetphysError
from netphys.models import load_model
from netphys.recording import (hooks, layer_shapes, load_recording, record, restored, sample_units,
                               save_recording, unit_table)
from netphys.stimuli import Preprocess, StimulusSet


def no_hooks_left(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture
def stim64(random_images):
    return StimulusSet.from_arrays(random_images(6, 64), labels=[0, 1, 2, 0, 1, 2])


@pytest.fixture
def stim32(random_images):
    return StimulusSet.from_arrays(random_images(4, 32, seed=1))


# ----------------------------------------------------------------------------- known answers (toy model)


class Coordinates(nn.Module):
    """Toy network whose every unit has a closed-form response.

    Input pixels (scale 255, mean 0, std 1, so the input *is* the uint8 image): channel 0 holds
    ``8 * row + col``, channel 1 the stimulus number ``k``. The 1x1 conv gives
    ``conv[c, row, col] = 8 * row + col + 1000 * c + 10000 * k``; the ReLU then the Linear layer,
    whose output ``j`` reads the flattened conv map at ``j`` (``fc[j] = conv.flatten()[j] - 5``).
    """

    def __init__(self, channels=3, size=8, fc=5):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(channels * size * size, fc)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0] = 1.0
            self.conv.weight[:, 1] = 10000.0
            self.conv.bias.copy_(1000.0 * torch.arange(channels))
            self.fc.weight.zero_()
            self.fc.weight[torch.arange(fc), torch.arange(fc)] = 1.0
            self.fc.bias.fill_(-5.0)

    def forward(self, x):
        return self.fc(self.flat(self.relu(self.conv(x))))


def coordinate_stimuli(n=4, size=8):
    img = np.zeros((n, size, size, 3), np.uint8)
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    img[..., 0] = 8 * r + c
    img[..., 1] = np.arange(n)[:, None, None]
    pre = Preprocess(resize=size, crop=size, mean=(0, 0, 0), std=(1, 1, 1), scale=255.0, name="identity")
    return StimulusSet.from_arrays(img, preprocess=pre)


def test_known_answer_every_unit():
    model = Coordinates().eval()
    st = coordinate_stimuli()
    rec = record(model, st, ["conv1", "fc2"], units="all")
    conv = rec.sel(unit=rec.layer == "conv1")
    assert conv.sizes["unit"] == 3 * 8 * 8
    k = np.arange(4)[:, None]
    want = 8 * conv.row.values + conv.col.values + 1000 * conv.channel.values + 10000 * k
    np.testing.assert_array_equal(conv.values, want)
    fc = rec.sel(unit=rec.layer == "fc2")
    assert (fc.row.values == -1).all() and (fc.col.values == -1).all()
    assert fc.channel.values.tolist() == [0, 1, 2, 3, 4]
    # fc[j] = conv.flatten()[j] - 5: channel 0, row 0, col j
    np.testing.assert_array_equal(fc.values, np.arange(5)[None, :] + 10000 * k - 5)


def test_known_answer_sampled_units_and_sites():
    model = Coordinates().eval()
    st = coordinate_stimuli()
    with torch.no_grad():
        model.conv.bias.copy_(torch.tensor([-100.0, 0.0, 100.0]))  # channel 0 partly negative
    pre = record(model, st, ["conv1"], units=40, random_state=3)
    post = record(model, st, ["conv1"], units=unit_table(pre), site="post")
    ch, r, c = pre.channel.values, pre.row.values, pre.col.values
    want = 8 * r + c + 10000 * np.arange(4)[:, None] + np.array([-100, 0, 100])[ch]
    np.testing.assert_array_equal(pre.values, want)
    assert (pre.values < 0).any()
    np.testing.assert_array_equal(post.values, np.maximum(want, 0))
    assert (pre.site.values == "pre").all() and (post.site.values == "post").all()


# ----------------------------------------------------------------------------- real networks


def test_inplace_relu_does_not_corrupt_pre(vgg11_random, stim32):
    """torchvision VGG-11: in-place ReLUs, no batch norm. pre must be the raw conv output."""
    model = vgg11_random
    assert model.features[1].inplace and model.features[4].inplace
    rec = record(model, stim32, ["conv1_1", "conv2_1", "fc6"], units=30, random_state=0, batch_size=3)
    post = record(model, stim32, units=unit_table(rec), site="post", batch_size=3)
    x = stim32.tensor()
    with torch.no_grad():
        conv1 = model.features[0](x)                       # conv1_1 output
        conv2 = model.features[:4](x)                      # conv2_1 output (features.3), before ReLU
        fc6 = model.classifier[0](torch.flatten(model.avgpool(model.features(x)), 1))
    for layer, ref in (("conv1_1", conv1), ("conv2_1", conv2)):
        sel = rec.sel(unit=rec.layer == layer)
        got = ref[:, sel.channel.values, sel.row.values, sel.col.values].numpy()
        np.testing.assert_allclose(sel.values, got, rtol=1e-5, atol=1e-6)
        assert (sel.values < 0).any(), f"{layer}: pre values must include negatives"
    sel = rec.sel(unit=rec.layer == "fc6")
    np.testing.assert_allclose(sel.values, fc6[:, sel.channel.values].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(post.values, np.maximum(rec.values, 0), rtol=1e-5, atol=1e-6)
    assert (post.values == 0).any() and (post.values > 0).any()


def test_values_equal_direct_forward_with_batch_norm(small_vgg, stim64):
    rec = record(small_vgg, stim64, ["conv1_1", "conv3_2", "fc7"], units=25, random_state=1)
    post = record(small_vgg, stim64, units=unit_table(rec), site="post")
    x = stim64.tensor()
    with torch.no_grad():
        f = small_vgg.features
        conv1 = f[0](x)
        conv3_2 = f[:18](x)                              # features.17 is conv3_2
        conv3_2_post = f[:20](x)                         # ... then BN (18) and ReLU (19)
        h = small_vgg.classifier[:4](torch.flatten(small_vgg.avgpool(f(x)), 1))  # fc7 = classifier.3
    for layer, ref in (("conv1_1", conv1), ("conv3_2", conv3_2)):
        sel = rec.sel(unit=rec.layer == layer)
        got = ref[:, sel.channel.values, sel.row.values, sel.col.values].numpy()
        np.testing.assert_allclose(sel.values, got, rtol=1e-5, atol=1e-5)
    sel = post.sel(unit=post.layer == "conv3_2")
    got = conv3_2_post[:, sel.channel.values, sel.row.values, sel.col.values].numpy()
    np.testing.assert_allclose(sel.values, got, rtol=1e-5, atol=1e-5)
    sel = rec.sel(unit=rec.layer == "fc7")
    np.testing.assert_allclose(sel.values, h[:, sel.channel.values].numpy(), rtol=1e-5, atol=1e-5)


def test_recording_invariant_to_batch_size(small_vgg, stim64):
    """Property: the batch size (1, a divisor, a non-divisor, larger than the set) changes nothing."""
    ref = record(small_vgg, stim64, ["conv2_2", "conv5_3", "fc8"], units=10, batch_size=64)
    for batch_size in (1, 4, 5):
        got = record(small_vgg, stim64, ["conv2_2", "conv5_3", "fc8"], units=10, batch_size=batch_size)
        np.testing.assert_array_equal(got.channel.values, ref.channel.values)
        np.testing.assert_allclose(got.values, ref.values, rtol=1e-4, atol=1e-5)


def test_early_stop_does_not_change_values(small_vgg, stim64):
    a = record(small_vgg, stim64, ["conv1_1"], units=10)
    b = record(small_vgg, stim64, ["conv1_1", "fc8"], units=10)
    np.testing.assert_array_equal(a.values, b.values[:, :10])


# ----------------------------------------------------------------------------- unit sampling


def test_sample_units_uniform_without_replacement(small_vgg):
    t = sample_units(small_vgg, ["conv1_1", "conv5_3", "fc6"], units=50, random_state=0)
    assert list(t.columns) == ["layer", "module", "kind", "depth", "channel", "row", "col"]
    assert t.groupby("layer").size().to_dict() == {"conv1_1": 50, "conv5_3": 50, "fc6": 50}
    assert not t.duplicated(["layer", "channel", "row", "col"]).any()
    c = t[t.layer == "conv1_1"]
    assert c.channel.between(0, 15).all() and c.row.between(0, 63).all() and c.col.between(0, 63).all()
    f = t[t.layer == "fc6"]
    assert (f.row == -1).all() and (f.col == -1).all() and f.channel.between(0, 255).all()
    # reproducible; another seed gives other units
    pd.testing.assert_frame_equal(t, sample_units(small_vgg, ["conv1_1", "conv5_3", "fc6"], 50, random_state=0))
    assert not t.equals(sample_units(small_vgg, ["conv1_1", "conv5_3", "fc6"], 50, random_state=1))


def test_sample_units_is_uniform_over_positions():
    """Property: over many draws, every (channel, row, col) of a layer is equally likely (chi-square)."""
    model = Coordinates(channels=4).eval()  # conv1: (4, 8, 8) = 256 units
    counts = np.zeros((4, 8, 8))
    rng = np.random.default_rng(0)
    for _ in range(100):
        t = sample_units(model, ["conv1"], units=64, input_size=8, random_state=rng)
        np.add.at(counts, (t.channel, t.row, t.col), 1)
    assert counts.sum() == 6400
    expected = 100 * 64 / 256
    chi2 = ((counts - expected) ** 2 / expected).sum()
    # chi-square with 255 dof: mean 255, sd 22.6; sampling without replacement only lowers it
    assert chi2 < 255 + 5 * 22.6
    # but not degenerate: every position drawn
    assert (counts > 0).all()


def test_all_units_and_allow_fewer(small_vgg, stim64):
    t = sample_units(small_vgg, ["fc8"], units="all")
    assert t.channel.tolist() == list(range(10))
    t = sample_units(small_vgg, ["conv5_3", "fc8"], units=20, allow_fewer=True)
    assert t.groupby("layer").size().to_dict() == {"conv5_3": 20, "fc8": 10}
    rec = record(small_vgg, stim64, "fc8", units="all")  # one layer as a plain string
    assert rec.sizes["unit"] == 10


def test_same_units_on_another_network(small_vgg, stim64):
    other = load_model("netphys_vgg16", "random", random_state=1)
    a = record(small_vgg, stim64, ["conv2_1", "fc6"], units=15, random_state=4)
    b = record(other, stim64, units=unit_table(a))
    for c in ("layer", "channel", "row", "col", "module", "depth", "kind"):
        np.testing.assert_array_equal(a[c].values, b[c].values)
    assert not np.allclose(a.values, b.values)
    assert b.attrs["weights"] == "random(seed=1)"



def test_same_units_on_a_torchvision_vgg(small_vgg, vgg11_random, stim64):
    """Units of the quarter-width default model exist in the full-width VGG-11 (same alias, more channels)."""
    a = record(small_vgg, stim64, ["conv2_1"], units=15, random_state=4)
    r = record(vgg11_random, stim64, units=unit_table(a))
    assert r.sizes["unit"] == 15 and (r.module.values == "features.3").all()
    np.testing.assert_array_equal(r.channel.values, a.channel.values)


def test_unit_table_out_of_range(small_vgg, stim64):
    t = sample_units(small_vgg, ["conv1_1"], units=3)
    t.loc[0, "channel"] = 999
    with pytest.raises(NetphysError, match=r"the 'units' parameter of record must be units inside layer "
                       r"'conv1_1' of shape \(16, 64, 64\)"):
        record(small_vgg, stim64, units=t)
    t = sample_units(small_vgg, ["fc8"], units=3)
    t.loc[0, "channel"] = 10
    with pytest.raises(NetphysError, match=r"the 'units' parameter of record must be units inside layer "
                       r"'fc8' of shape \(10,\)"):
        record(small_vgg, stim64, units=t)
    with pytest.raises(NetphysError, match=r"the 'units' parameter of record must be a unit table with "
                       r"columns layer, channel, row, col"):
        record(small_vgg, stim64, units=pd.DataFrame({"layer": ["fc8"], "channel": [0]}))


# ----------------------------------------------------------------------------- hooks, mode, device


class Exploding(nn.Module):
    """Raises half-way through the forward pass, for batches of more than one image (the one-image dry
    runs that learn the layer shapes pass, the recording itself fails with hooks registered)."""

    def __init__(self, exc=RuntimeError):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.exc = exc

    def forward(self, x):
        x = self.relu(self.conv1(x))
        if x.shape[0] > 1:
            raise self.exc("boom in the middle of the forward pass")
        return self.conv2(x)


@pytest.mark.parametrize("exc", [RuntimeError, ValueError, KeyboardInterrupt])
def test_no_hook_survives_a_failing_forward(stim32, exc):
    model = Exploding(exc)
    model.train()
    model.relu.eval()  # a per-module mode that must come back too
    with pytest.raises((NetphysError, exc), match="boom"):
        record(model, stim32, ["conv1", "conv2"], units=5, site="post")
    assert no_hooks_left(model)
    assert model.training and not model.relu.training
    assert next(model.parameters()).device.type == "cpu"


def test_hooks_context_removes_on_exception(small_vgg):
    with pytest.raises(ZeroDivisionError):
        with hooks(small_vgg, {"features.0": lambda m, i, o: None, "classifier.0": lambda m, i, o: None}):
            assert not no_hooks_left(small_vgg)
            1 / 0
    assert no_hooks_left(small_vgg)


def test_record_restores_mode_and_leaves_no_hooks(small_vgg, stim64):
    small_vgg.train()
    bn = small_vgg.features[1]
    mean = bn.running_mean.clone()
    record(small_vgg, stim64, ["conv1_1", "fc8"], units=5)
    assert small_vgg.training and all(m.training for m in small_vgg.modules())
    assert torch.equal(bn.running_mean, mean), "recording must run in eval mode (BN statistics untouched)"
    assert no_hooks_left(small_vgg)
    small_vgg.eval()


def test_restored_keeps_per_module_modes(small_vgg):
    small_vgg.train()
    small_vgg.features[1].eval()  # e.g. a frozen batch norm while fine-tuning
    with restored(small_vgg):
        assert not small_vgg.training
    assert small_vgg.training and not small_vgg.features[1].training
    small_vgg.eval()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_record_on_gpu_restores_device(small_vgg, stim64):
    ref = record(small_vgg, stim64, ["conv2_1", "fc6"], units=10)
    got = record(small_vgg, stim64, ["conv2_1", "fc6"], units=10, device="cuda")
    assert next(small_vgg.parameters()).device.type == "cpu"
    assert isinstance(got.values, np.ndarray)
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------- errors


class NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(2 * 32 * 32, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x) * float("nan"), 1))


@pytest.mark.parametrize("kw, match", [
    ({"layers": ["conv9_1"]}, r"the 'layers' parameter of record names an unknown layer, got 'conv9_1'; "
     r"valid layers are: conv1_1 \(features.0\)"),
    ({"layers": ["fc8"], "units": 250}, r"the 'units' parameter of record must be <= the number of units "
     r"of layer 'fc8' \(10, shape \(10,\)\), got 250; ask for fewer units"),
    ({"units": 0}, r"the 'units' parameter of record must be an int >= 1, got 0"),
    ({"batch_size": 0}, r"the 'batch_size' parameter of record must be an int >= 1, got 0"),
    ({"batch_size": -3}, r"the 'batch_size' parameter of record must be an int >= 1, got -3"),
    ({"site": "mid"}, r"the 'site' parameter of record must be one of 'pre', 'post', got 'mid'"),
    ({"random_state": -1}, r"the 'random_state' parameter of record must be None, a non-negative int"),
    ({"layers": []}, r"the 'layers' parameter of record must be a non-empty list of layer names"),
])
def test_record_errors(small_vgg, stim64, kw, match):
    kw = {"layers": ["conv1_1"], "units": 5, **kw}
    with pytest.raises(NetphysError, match=match):
        record(small_vgg, stim64, **kw)
    assert no_hooks_left(small_vgg)


def test_record_error_not_a_stimulus_set(small_vgg):
    with pytest.raises(NetphysError, match=r"the 'stimuli' parameter of record must be a netphys "
                       r"StimulusSet, got 'ndarray'; build one with StimulusSet"):
        record(small_vgg, np.zeros((2, 64, 64, 3)), ["conv1_1"])


def test_record_nan_activations(stim32):
    with pytest.raises(NetphysError, match=r"record produced 12 NaN/inf activations in layer\(s\) \['fc2'\]"):
        record(NaNNet(), stim32, ["conv1", "fc2"], units=3)


def test_record_wrong_input_size(vgg11_random):
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 2))
    st = StimulusSet.from_arrays(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(NetphysError, match=r"the 'stimuli' parameter of record must be images the network "
                       r"can process, got '16x16 px images'; its forward pass on a zero image of shape "
                       r"\(1, 3, 16, 16\) failed \(RuntimeError: mat1 and mat2 shapes cannot be multiplied"):
        record(model, st, ["conv1"], units=2)
    assert no_hooks_left(model)


# ----------------------------------------------------------------------------- labelled output and storage


def test_recording_coordinates_and_provenance(small_vgg, stim64):
    rec = record(small_vgg, stim64, ["conv1_1", "fc6"], units=4, random_state=2, batch_size=5)
    assert rec.dims == ("stimulus", "unit") and rec.dtype == np.float32 and rec.shape == (6, 8)
    for c in ("layer", "module", "kind", "depth", "channel", "row", "col", "site"):
        assert rec[c].dims == ("unit",)
    for c in ("label", "class_name", "source"):
        assert rec[c].dims == ("stimulus",)
    a = rec.attrs
    assert a["netphys_version"] and a["model"] == "netphys_vgg16" and a["weights"] == "random(seed=0)"
    assert a["seed"] == 2 and a["site"] == "pre" and a["batch_size"] == 5
    assert json.loads(a["layers"]) == ["conv1_1", "fc6"]
    assert json.loads(a["stimuli"])["preprocess"]["crop"] == 64
    assert json.loads(a["config"])["units"] == 4
    assert "T" in a["created"]


def test_stimulus_columns_do_not_clobber_unit_coordinates(small_vgg, random_images):
    st = StimulusSet.from_arrays(random_images(3, 64), coords={"layer": ["a", "b", "c"], "unit": [1, 2, 3]})
    rec = record(small_vgg, st, ["conv1_1"], units=2)
    assert (rec.layer.values == "conv1_1").all()
    assert rec.stimulus_layer.values.tolist() == ["a", "b", "c"]
    assert rec.stimulus_unit.values.tolist() == [1, 2, 3]


def test_save_load_round_trip(small_vgg, stim64, tmp_path):
    rec = record(small_vgg, stim64, ["conv1_1", "fc6"], units=4)
    path = save_recording(rec, tmp_path / "sub" / "rec.nc")
    back = load_recording(path)
    xr.testing.assert_identical(back, rec)
    for c in rec.coords:
        np.testing.assert_array_equal(back[c].values, rec[c].values)
    assert back.attrs == rec.attrs
    assert back.layer.values.dtype.kind in "OU"
    pd.testing.assert_frame_equal(unit_table(back), unit_table(rec))
    # a loaded recording's units can be recorded again
    again = record(small_vgg, stim64, units=unit_table(back))
    np.testing.assert_array_equal(again.values, rec.values)


def test_save_recording_is_atomic(small_vgg, stim64, tmp_path, monkeypatch):
    rec = record(small_vgg, stim64, ["conv1_1"], units=3)
    path = save_recording(rec, tmp_path / "rec.nc")
    before = path.read_bytes()

    def broken(self, target, *a, **k):
        with open(target, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        save_recording(rec * 2, path)
    assert path.read_bytes() == before
    with pytest.raises(OSError):
        save_recording(rec, tmp_path / "new.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.nc"]


def test_save_load_errors(tmp_path):
    with pytest.raises(NetphysError, match=r"the 'recording' parameter of save_recording must be an "
                       r"xarray.DataArray from record\(\), got 'dict'"):
        save_recording({}, tmp_path / "x.nc")
    with pytest.raises(NetphysError, match=r"the 'path' parameter of load_recording must be an existing "
                       r"netCDF file, got '.*missing.nc'"):
        load_recording(tmp_path / "missing.nc")


def test_layer_never_run_is_an_error(stim32):
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.spare = nn.Conv2d(2, 2, 3)  # defined, never called

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(NetphysError, match=r"the 'layers' parameter of record must be layers that the "
                       r"model's forward pass runs, got \['conv2'\]"):
        record(Unused(), stim32, ["conv1", "conv2"], units=2)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "offset", "sliced", "permuted", "one"])
def test_gather_any_memory_layout(layout):
    """The unit gather reads (channel, row, col) correctly whatever the strides of the layer output."""
    from netphys.recording.record import _Gather

    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 6, 7, 8, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "offset":
        x = torch.randn(7, 6, 7, 8, generator=g)[2:]  # contiguous, non-zero storage offset
    elif layout == "sliced":
        x = torch.randn(5, 9, 7, 8, generator=g)[:, 1:7]
    elif layout == "permuted":
        x = torch.randn(5, 8, 6, 7, generator=g).permute(0, 2, 3, 1)
    elif layout == "one":
        x = x[:1].contiguous(memory_format=torch.channels_last)
    rng = np.random.default_rng(1)
    flat = np.sort(rng.choice(6 * 7 * 8, 40, replace=False))
    pos = np.unravel_index(flat, (6, 7, 8))
    gather = _Gather(pos, "cpu")
    want = x[:, torch.as_tensor(pos[0]), torch.as_tensor(pos[1]), torch.as_tensor(pos[2])]
    torch.testing.assert_close(gather(x), want, rtol=0, atol=0)
    torch.testing.assert_close(gather(x), want, rtol=0, atol=0)  # cached strides path
    fc = torch.randn(3, 20, generator=g)
    torch.testing.assert_close(_Gather((np.array([0, 7, 19]),), "cpu")(fc), fc[:, [0, 7, 19]])

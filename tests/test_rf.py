"""Receptive fields: analytic geometry vs the input-gradient support, known VGG-16 sizes, errors, hooks."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from netphys._validation import NetphysError
from netphys.models import load_model
from netphys.rf import (AnalyticRFError, RFGeometry, crop_patches, gradient_receptive_fields, iter_patches,
                        layer_geometry, receptive_fields, rf_table)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _support_box(model, layer_module, unit, x):
    """Independent reference: bounding box of |d unit / d x| > 0 for one input (plain autograd)."""
    store = {}
    h = layer_module.register_forward_hook(lambda m, a, o: store.__setitem__("y", o[unit]))
    try:
        x = x.clone().requires_grad_(True)
        model(x.clone())
    finally:
        h.remove()
    (g,) = torch.autograd.grad(store["y"], x)
    support = g.abs().sum((0, 1)) > 0
    r = torch.nonzero(support.any(1)).flatten()
    c = torch.nonzero(support.any(0)).flatten()
    return int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1


def _contains(outer, inner):
    outer, inner = np.atleast_2d(outer), np.atleast_2d(inner)
    empty = inner[:, 1] == inner[:, 0]
    ok = ((outer[:, 0] <= inner[:, 0]) & (inner[:, 1] <= outer[:, 1])
          & (outer[:, 2] <= inner[:, 2]) & (inner[:, 3] <= outer[:, 3]))
    return bool(np.all(ok | empty))


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


def _probe_positions(h, w):
    """Corners, edges and interior positions of an h x w map."""
    rows = np.array([0, 0, h - 1, h // 2, h // 2])
    cols = np.array([0, w - 1, w - 1, w // 2, 0])
    return rows, cols


@pytest.fixture(scope="module")
def vgg11():
    return load_model("vgg11", weights="random")


@pytest.fixture(scope="module")
def alexnet():
    return load_model("alexnet", weights="random")


@pytest.fixture(scope="module")
def small_vgg():
    return load_model("netphys_vgg16", weights="random")


@pytest.fixture(scope="module")
def resnet18():
    return load_model("resnet18", weights="random")


# --------------------------------------------------------------------------------------------------
# (a) analytic RF == support of the input gradient
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name, size, layers", [
    ("vgg11", 64, ["conv1_1", "pool1", "conv2_1", "pool2", "conv3_1"]),
    ("alexnet", 63, ["conv1", "pool1", "conv2", "pool2"]),  # 63 px: AlexNet's smallest input
    ("small_vgg", 64, ["conv1_2", "pool1", "conv2_2", "conv3_1", "pool3", "conv4_1"]),
])
def test_analytic_equals_gradient_support(request, model_name, size, layers):
    model = request.getfixturevalue(model_name)
    for layer in layers:
        geom = layer_geometry(model, layer, size)
        _, h, w = geom.shape
        rows, cols = _probe_positions(h, w)
        analytic = receptive_fields(model, layer, rows, cols, size)
        assert np.array_equal(analytic, geom.boxes(rows, cols))
        assert analytic.dtype == np.int64 and analytic.shape == (rows.size, 4)
        assert (analytic[:, [0, 2]] >= 0).all() and (analytic[:, [1, 3]] <= size).all()
        # the RF of each position (all channels): equal to the analytic box, border units included
        grad = gradient_receptive_fields(model, layer, None, rows, cols, size, n_samples=2, random_state=0)
        assert np.array_equal(grad, analytic), (layer, analytic.tolist(), grad.tolist())
    # single channels, one input each: the support never leaves the analytic box (clipped units too)
    chans = np.arange(rows.size)
    grad = gradient_receptive_fields(model, layer, chans, rows, cols, size, n_samples=1, random_state=1)
    assert _contains(analytic, grad)


def test_border_units_are_clipped(vgg11):
    geom = layer_geometry(vgg11, "conv3_2", 64)
    assert (geom.size, geom.jump, geom.start) == ((26, 26), (4, 4), (-11, -11))
    boxes = geom.boxes([0, 15, 8], [0, 15, 0])
    # unclipped: [-11, 15), [49, 75), [21, 47) -> clipped at 0 and 64
    assert boxes.tolist() == [[0, 15, 0, 15], [49, 64, 49, 64], [21, 47, 0, 15]]


def test_independent_gradient_support_inside_analytic_box(small_vgg):
    module = dict(small_vgg.named_modules())[layer_geometry(small_vgg, "conv3_3", 64).module]
    box = receptive_fields(small_vgg, "conv3_3", [0, 8], [15, 8], 64)
    gen = torch.Generator().manual_seed(0)
    for k, (r, c) in enumerate([(0, 15), (8, 8)]):
        x = torch.randn(1, 3, 64, 64, generator=gen)
        ref = _support_box(small_vgg, module, (0, k, r, c), x)
        assert _contains(box[k], np.array(ref))


# --------------------------------------------------------------------------------------------------
# (b) known VGG-16 RF sizes at 224 px
# --------------------------------------------------------------------------------------------------
VGG16_RF = {  # alias: (size, jump, start) of the analytic RF at 224 px
    "conv1_1": (3, 1, -1), "conv1_2": (5, 1, -2), "pool1": (6, 2, -2),
    "conv2_1": (10, 2, -4), "conv2_2": (14, 2, -6), "pool2": (16, 4, -6),
    "conv3_1": (24, 4, -10), "conv3_2": (32, 4, -14), "conv3_3": (40, 4, -18), "pool3": (44, 8, -18),
    "conv4_1": (60, 8, -26), "conv4_2": (76, 8, -34), "conv4_3": (92, 8, -42), "pool4": (100, 16, -42),
    "conv5_1": (132, 16, -58), "conv5_2": (164, 16, -74), "conv5_3": (196, 16, -90),
    "pool5": (212, 32, -90),
}


def _vgg16_trunk(width):
    """VGG-16's conv/pool stack (torchvision "D" plan) with the classifier of the netphys SmallVGG.

    The RF geometry does not depend on the number of channels, so the full table is checked on a thin
    copy (channels / 64) and the first layers on torchvision's full-width stack.
    """
    from netphys.models.architectures import VGG16_PLAN, SmallVGG, scaled_plan

    torch.manual_seed(0)
    return SmallVGG(scaled_plan(VGG16_PLAN, width), num_classes=10, hidden=8, pool_size=7,
                    batch_norm=False).eval()


def test_vgg16_known_rf_sizes():
    model = _vgg16_trunk(1 / 64)
    table = rf_table(model, 224).set_index("layer")
    for alias, (size, jump, start) in VGG16_RF.items():
        row = table.loc[alias]
        assert (row.rf_size, row.rf_size_cols, row.jump, row.start) == (size, size, jump, start), alias
        assert not row.full_image
    assert table.loc["pool5", "shape"][1:] == (7, 7)
    assert table.loc["conv5_3", "clipped_sizes"][-1] == 196
    for fc in ("fc6", "fc7", "fc8"):  # the 7x7 adaptive pool is the identity at 224 px
        assert table.loc[fc, "full_image"] and table.loc[fc, "rf_size"] == 224
    # derive the pinned values from VGG-16's plan: 3x3/1/1 convs and 2x2/2 pools
    size, jump, start, derived = 1, 1, 0, {}
    block, conv = 1, 0
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        k, s, p = (2, 2, 0) if v == "M" else (3, 1, 1)
        start, size, jump = start - p * jump, size + (k - 1) * jump, jump * s
        if v == "M":
            name, block, conv = f"pool{block}", block + 1, 0
        else:
            conv += 1
            name = f"conv{block}_{conv}"
        derived[name] = (size, jump, start)
    assert derived == VGG16_RF


def test_vgg16_first_layers_torchvision():
    import torchvision

    class VGG16Trunk(nn.Module):  # torchvision's full-width VGG-16 conv stack, features.N naming
        def __init__(self):
            super().__init__()
            self.features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])

        def forward(self, x):
            return self.features(x)

    model = VGG16Trunk()
    table = rf_table(model, 224, ["conv1_1", "conv1_2", "pool1"]).set_index("layer")
    assert table["module"].tolist() == ["features.0", "features.2", "features.4"]
    for alias in table.index:
        assert (table.loc[alias, "rf_size"], table.loc[alias, "jump"],
                table.loc[alias, "start"]) == VGG16_RF[alias]
    geom = layer_geometry(model, "pool1", 224)
    assert isinstance(geom, RFGeometry) and geom.shape == (64, 112, 112)


# --------------------------------------------------------------------------------------------------
# (c) fully connected units see the whole image
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name, size", [("small_vgg", 64), ("vgg11", 64), ("alexnet", 63)])
def test_fc_units_see_whole_image(request, model_name, size):
    model = request.getfixturevalue(model_name)
    table = rf_table(model, size, ["fc6", "fc7", "fc8"])
    assert table["full_image"].all() and (table["rf_size"] == size).all()
    geom = layer_geometry(model, "fc8", size)
    assert geom.full_image and not geom.is_spatial and len(geom.shape) == 1
    assert geom.boxes([-1, -1], [-1, -1]).tolist() == [[0, size, 0, size]] * 2
    assert receptive_fields(model, "fc6", -1, -1, size).tolist() == [[0, size, 0, size]]


def test_identity_adaptive_pool_keeps_geometry(small_vgg):
    pool5 = layer_geometry(small_vgg, "pool5", 64)
    avg = layer_geometry(small_vgg, "avgpool", 64)  # 2x2 -> 2x2 at 64 px: the identity
    assert not avg.full_image and (avg.size, avg.jump, avg.start) == (pool5.size, pool5.jump, pool5.start)


# --------------------------------------------------------------------------------------------------
# (d) hand-built chains with stride, padding, dilation, tuples, ceil_mode, adaptive pools
# --------------------------------------------------------------------------------------------------
def _hand_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1),                     # size 3,  jump 2, start -1
        nn.ReLU(inplace=True),
        nn.Conv2d(3, 3, 3, dilation=2, padding=2),                   # k' = 5: size 11, jump 2, start -5
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),        # size 15, jump 4, start -7
        nn.Conv2d(3, 2, (3, 5), stride=(1, 2), padding=(0, 2)),      # rows 23/4/-7, cols 31/8/-15
    )


def test_hand_built_chain():
    model = _hand_model()
    geom = layer_geometry(model, "4", 32)
    assert geom.shape == (2, 7, 5)  # 32 -> 16 -> 16 -> 9 (ceil) -> (7, 5)
    assert (geom.size, geom.jump, geom.start) == ((23, 31), (4, 8), (-7, -15))
    mid = layer_geometry(model, "2", 32)
    assert (mid.size, mid.jump, mid.start) == ((11, 11), (2, 2), (-5, -5))
    boxes = receptive_fields(model, "4", [0, 6, 3], [0, 4, 2], 32)
    # (0,0): rows [-7, 16) cols [-15, 16); (6,4): rows [17, 40) cols [17, 48); (3,2): [5, 28) [1, 32)
    assert boxes.tolist() == [[0, 16, 0, 16], [17, 32, 17, 32], [5, 28, 1, 32]]
    grad = gradient_receptive_fields(model, "4", None, [0, 6, 3], [0, 4, 2], 32, n_samples=8,
                                     random_state=0)
    assert np.array_equal(grad, boxes)
    assert _no_hooks(model)


def test_same_padding_zero_pad_and_divisible_adaptive_pool():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ZeroPad2d((2, 0, 1, 0)),                        # left 2, top 1
                          nn.Conv2d(1, 2, 5, padding="same", dilation=1),    # size 5, start -1-2 / -2-2
                          nn.BatchNorm2d(2), nn.Tanh(),
                          nn.AvgPool2d(2),                                    # size 6, jump 2
                          nn.AdaptiveAvgPool2d((4, 4)))                       # in 8x9 -> rows k=s=2
    geom = layer_geometry(model, "4", (16, 17))
    assert (geom.size, geom.jump, geom.start) == ((6, 6), (2, 2), (-3, -4))
    # the last pool: rows 8 -> 4 is a 2x2 pool; cols 9 -> 4 is not a pooling: whole image
    geom = layer_geometry(model, "5", (16, 17))
    assert geom.full_image and geom.boxes(0, 0).tolist() == [[0, 16, 0, 17]]
    model[5] = nn.AdaptiveAvgPool2d((4, 3))
    geom = layer_geometry(model, "5", (16, 17))  # rows 8 -> 4 (k = 2), cols 9 -> 3 (k = 3)
    assert not geom.full_image and (geom.size, geom.jump) == ((8, 10), (4, 6))


def test_functional_ops_break_the_chain():
    class Scaled(nn.Module):
        def __init__(self, inplace):
            super().__init__()
            self.inplace = inplace
            self.a, self.b = nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3)

        def forward(self, x):
            x = self.a(x)
            if self.inplace:
                x += 1.0  # invisible to module hooks, caught by the tensor's version counter
            else:
                x = x * 2.0
            return self.b(x)

    for inplace in (False, True):
        model = Scaled(inplace)
        assert layer_geometry(model, "a", 16).size == (3, 3)
        with pytest.raises(AnalyticRFError, match="needs a sequential model.*'b'"):
            layer_geometry(model, "b", 16)
        auto = receptive_fields(model, "b", [5], [5], 16, method="auto", n_samples=2, random_state=0)
        assert auto.tolist() == [[5, 10, 5, 10]]


def test_unsupported_module_points_to_gradient():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3))
    with pytest.raises(AnalyticRFError, match="Upsample.*gradient_receptive_fields"):
        layer_geometry(model, "2", 16)


# --------------------------------------------------------------------------------------------------
# (e) ResNet: analytic raises, gradient works
# --------------------------------------------------------------------------------------------------
def test_resnet_analytic_raises_gradient_works(resnet18):
    # up to layer1.0.conv2 the executed modules are still a chain
    g = layer_geometry(resnet18, "layer1.0.conv2", 64)
    assert (g.size, g.jump, g.start) == ((27, 27), (4, 4), (-13, -13))
    with pytest.raises(AnalyticRFError, match=r"needs a sequential model.*'layer1\.0\.relu'.*"
                                              r"gradient_receptive_fields.*method='gradient'"):
        layer_geometry(resnet18, "layer1.1.conv1", 64)
    with pytest.raises(AnalyticRFError, match="sequential"):
        receptive_fields(resnet18, "layer1.1.conv1", [8], [8], 64, method="analytic")
    rows, cols = np.array([8, 0, 15]), np.array([8, 0, 4])
    grad = gradient_receptive_fields(resnet18, "layer1.1.conv1", None, rows, cols, 64, n_samples=2,
                                     random_state=0)
    # by hand: stem 7/2/-3, maxpool 11/4/-5, layer1.0 main path 27/4/-13 (the skip's 11 lies inside),
    # layer1.1.conv1 35/4/-17
    assert grad.tolist() == [[15, 50, 15, 50], [0, 18, 0, 18], [43, 64, 0, 34]]
    auto = receptive_fields(resnet18, "layer1.1.conv1", 8, 8, 64, method="auto", n_samples=1, random_state=0)
    same = gradient_receptive_fields(resnet18, "layer1.1.conv1", None, 8, 8, 64, n_samples=1, random_state=0)
    assert np.array_equal(auto, same) and _contains(grad[:1], auto)
    # the boxes contain the support of single-unit gradients computed independently
    module = dict(resnet18.named_modules())["layer1.1.conv1"]
    chan = gradient_receptive_fields(resnet18, "layer1.1.conv1", [3, 5, 7], rows, cols, 64, n_samples=2,
                                     random_state=0)
    assert _contains(grad, chan)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    ref = _support_box(resnet18, module, (0, 3, 8, 8), x)
    assert _contains(grad[0], np.array(ref))
    assert _no_hooks(resnet18) and not resnet18.training


def test_gradient_is_deterministic_and_thresholded(small_vgg):
    a = gradient_receptive_fields(small_vgg, "conv2_1", 0, [4, 10], [4, 10], 32, n_samples=2,
                                  random_state=5)
    b = gradient_receptive_fields(small_vgg, "conv2_1", [0, 0], [4, 10], [4, 10], 32, n_samples=2,
                                  random_state=5, batch_size=1)
    assert np.array_equal(a, b)
    c = gradient_receptive_fields(small_vgg, "conv2_1", 0, [4, 10], [4, 10], 32, n_samples=2,
                                  random_state=5, threshold=0.5)
    assert _contains(a, c)


# --------------------------------------------------------------------------------------------------
# (e2) single-channel units behind max-pools: the default gradient boxes equal the analytic ones
# --------------------------------------------------------------------------------------------------
def _unit_sample(shape, n, seed):
    """Corner and edge units plus ``n`` random ones, each in a random channel."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    rows = np.concatenate([[0, 0, h - 1, h - 1, 0, h // 2], rng.integers(0, h, n)])
    cols = np.concatenate([[0, w - 1, 0, w - 1, w // 2, 0], rng.integers(0, w, n)])
    return rng.integers(0, c, rows.size), rows, cols


@pytest.mark.parametrize("model_name, size, layers", [
    ("alexnet", 63, ["pool1", "pool2", "conv3"]),
    ("vgg11", 64, ["pool2", "pool3"]),
])
def test_single_channel_gradient_boxes_match_analytic_behind_pools(request, model_name, size, layers):
    import warnings

    from netphys.rf import DeadUnitsWarning

    model = request.getfixturevalue(model_name)
    for layer in layers:
        geom = layer_geometry(model, layer, size)
        chans, rows, cols = _unit_sample(geom.shape, 18 if model_name == "alexnet" else 10, seed=len(layer))
        analytic = geom.boxes(rows, cols)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            grad = gradient_receptive_fields(model, layer, chans, rows, cols, size, batch_size=32)
        assert isinstance(grad, np.ma.MaskedArray) and grad.dtype == np.int64
        dead = np.ma.getmaskarray(grad).any(1)
        assert (~dead).sum() >= 5, (layer, int(dead.sum()))  # enough live units for the check to bite
        # every live unit's box is the analytic one, border units included
        assert np.array_equal(grad.data[~dead], analytic[~dead]), (layer, grad.data[~dead].tolist())
        assert (grad.data[dead] == -1).all()
        msgs = [str(w.message) for w in caught if issubclass(w.category, DeadUnitsWarning)]
        if dead.any():
            idx = ", ".join(str(i) for i in np.flatnonzero(dead))
            assert len(msgs) == 1 and f"{dead.sum()} of {rows.size} unit(s) of {layer!r}" in msgs[0]
            assert f"unit index(es) {idx}" in msgs[0]
        else:
            assert not msgs
    assert _no_hooks(model) and not model.training


def test_random_probes_alone_underestimate_pool_boxes(alexnet):
    """The reason for the structural probe: without it, a few random inputs miss RF corners."""
    geom = layer_geometry(alexnet, "pool2", 63)
    chans, rows, cols = _unit_sample(geom.shape, 26, seed=1)
    analytic = geom.boxes(rows, cols)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = gradient_receptive_fields(alexnet, "pool2", chans, rows, cols, 63, n_samples=2,
                                          structural=False, batch_size=32)
        full = gradient_receptive_fields(alexnet, "pool2", chans, rows, cols, 63, n_samples=2, batch_size=32)
    live = ~np.ma.getmaskarray(plain).any(1)
    assert np.array_equal(np.ma.getmaskarray(plain), np.ma.getmaskarray(full))  # same dead units
    assert _contains(analytic[live], plain.data[live])
    short = (analytic[live] - plain.data[live]) * np.array([-1, 1, -1, 1])
    assert short.max() > 0  # at least one side is short without the structural probe
    assert np.array_equal(full.data[live], analytic[live])


def test_dead_units_are_masked_and_named():
    import warnings

    from netphys.rf import DeadUnitsWarning

    conv = nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.normal_(generator=torch.Generator().manual_seed(0))
        conv.bias.zero_()
        conv.weight[1].zero_()
        conv.bias[1] = -1.0  # channel 1 is off for every input: its ReLU never passes a gradient
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(2, 1, 1)).eval()
    with pytest.warns(DeadUnitsWarning, match=r"2 of 3 unit\(s\) of '2' have a zero input gradient for "
                                              r"every one of the 8 probe inputs .* unit index\(es\) 1, 2$"):
        boxes = gradient_receptive_fields(model, "2", [0, 1, 1], [0, 3, 0], [0, 3, 1], 8)
    assert boxes.mask.tolist() == [[False] * 4, [True] * 4, [True] * 4]
    assert boxes.data[0].tolist() == [0, 3, 0, 3] and (boxes.data[1:] == -1).all()
    assert boxes.tolist()[1] == [None] * 4
    # the 1x1 conv above mixes both channels: alive, and its box is the analytic one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        top = gradient_receptive_fields(model, "3", 0, [0, 3], [0, 2], 8)
    assert top.data.tolist() == layer_geometry(model, "3", 8).boxes([0, 3], [0, 2]).tolist()
    assert _no_hooks(model)


def test_structural_probe_keeps_forward_values(small_vgg):
    """The linearised backward leaves the forward values (and so the selected units) untouched."""
    from netphys.rf.gradient import _structural_gradients

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = small_vgg(x)
    with torch.enable_grad(), _structural_gradients(small_vgg):
        xg = x.clone().requires_grad_(True)
        out = small_vgg(xg)
        (g,) = torch.autograd.grad(out[0, 3], xg)
    assert torch.allclose(out, ref, atol=1e-5) and _no_hooks(small_vgg)
    assert g[1].abs().sum() == 0 and (g[0].abs().sum(0) > 0).all()  # fc unit: every pixel connected


# --------------------------------------------------------------------------------------------------
# (f) hooks removed and modes restored, also when the forward raises
# --------------------------------------------------------------------------------------------------
def test_hooks_removed_and_mode_restored_on_error(small_vgg):
    model = small_vgg
    model.train()
    model.features[1].eval()  # mixed modes must come back exactly
    try:
        with pytest.raises(NetphysError, match="forward pass on an input of shape \\(1, 1, 64, 64\\) "
                                               "failed.*in_channels"):
            layer_geometry(model, "conv2_1", 64, in_channels=1)
        assert _no_hooks(model)
        assert model.training and not model.features[1].training and model.features[0].training
        with pytest.raises(NetphysError, match="input_size"):
            receptive_fields(model, "conv2_1", 0, 0, 64, method="gradient", in_channels=1)
        assert _no_hooks(model) and model.training and not model.features[1].training
        layer_geometry(model, "conv2_1", 64)
        gradient_receptive_fields(model, "conv2_1", 0, 0, 0, 32, n_samples=1, random_state=0)
        assert _no_hooks(model) and model.training and not model.features[1].training
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


def test_hooks_removed_when_gradient_forward_raises():
    class Boom(nn.Module):  # fine for the shape probe (no grad), fails on the gradient probes
        def forward(self, x):
            if x.requires_grad:
                raise RuntimeError("boom")
            return x

    model = nn.Sequential(Boom(), nn.Conv2d(1, 1, 3))
    model.train()
    with pytest.raises(NetphysError, match="boom"):
        gradient_receptive_fields(model, "1", 0, [0, 1], [0, 1], 8, n_samples=1, random_state=0)
    assert _no_hooks(model) and model.training


# --------------------------------------------------------------------------------------------------
# (g) bad input
# --------------------------------------------------------------------------------------------------
def test_unknown_layer_lists_valid_names(small_vgg):
    with pytest.raises(NetphysError, match=r"unknown layer, got 'conv9_9'; valid layers are: "
                                           r"conv1_1 \(features\.0\), .*pool5 .*fc8 \(classifier\.6\)"):
        layer_geometry(small_vgg, "conv9_9", 64)
    with pytest.raises(NetphysError, match="unknown layer"):
        gradient_receptive_fields(small_vgg, "features", 0, 0, 0, 64)


@pytest.mark.parametrize("call, match", [
    (lambda m: layer_geometry(m, "pool5", 32), r"'input_size' parameter of layer_geometry must be a size "
                                                r"the network accepts, got 32; .*too small"),
    (lambda m: layer_geometry(m, "conv1", 0), r"'input_size' parameter of layer_geometry must be a positive"),
    (lambda m: layer_geometry(m, "conv1", 64.0), r"'input_size' parameter .* got 64\.0"),
    (lambda m: receptive_fields(m, "conv1", [0, 15], [0, 3], 64),
     r"'rows' parameter of receptive_fields must be ints in \[0, 14\] \(the layer's output height is 15\), got 15"),
    (lambda m: receptive_fields(m, "conv1", [0], [-1], 64), r"'cols' parameter .* in \[0, 14\].*got -1"),
    (lambda m: receptive_fields(m, "conv1", [0, 1], [0], 64), r"'cols' parameter .* same length as 'rows'"),
    (lambda m: receptive_fields(m, "conv1", [0.5], [0], 64), r"'rows' parameter .* ints"),
    (lambda m: receptive_fields(m, "fc6", [0], [0], 64), r"'rows' parameter .* must be -1 .*\(4096,\)"),
    (lambda m: receptive_fields(m, "conv1", 0, 0, 64, method="exact"), r"'method' parameter .* 'analytic'"),
    (lambda m: gradient_receptive_fields(m, "conv1", 64, 0, 0, 64), r"'channels' parameter .* \[0, 63\]"),
    (lambda m: gradient_receptive_fields(m, "conv1", [1, 2], 0, 0, 64), r"'channels' .* same length"),
    (lambda m: gradient_receptive_fields(m, "conv1", 0, 0, 0, 64, n_samples=0), r"'n_samples' .* >= 1"),
    (lambda m: gradient_receptive_fields(m, "conv1", 0, 0, 0, 64, threshold=1.0), r"'threshold' .*\[0, 1\)"),
    (lambda m: gradient_receptive_fields(m, "conv1", 0, 0, 0, 64, random_state=-1), r"'random_state'"),
])
def test_bad_input_messages(alexnet, call, match):
    with pytest.raises(NetphysError, match=match):
        call(alexnet)
    assert _no_hooks(alexnet)


# --------------------------------------------------------------------------------------------------
# patches and tables
# --------------------------------------------------------------------------------------------------
def test_crop_patches():
    images = np.arange(2 * 8 * 10, dtype=float).reshape(2, 8, 10)
    p = crop_patches(images, np.array([1, 4, 2, 7]))
    assert p.shape == (2, 3, 5) and np.shares_memory(p, images)
    assert p[1, 0, 0] == images[1, 1, 2]
    patches = list(iter_patches(images, [[0, 8, 0, 10], [7, 8, 9, 10]]))
    assert [q.shape for q in patches] == [(2, 8, 10), (2, 1, 1)]
    with pytest.raises(NetphysError, match=r"'box' parameter of crop_patches must be a non-empty box "
                                           r"inside the 8x10 images, got \(0, 9, 0, 4\)"):
        crop_patches(images, [0, 9, 0, 4])
    with pytest.raises(NetphysError, match=r"'gray_images' parameter .* \(N, H, W\)"):
        crop_patches(images[0], [0, 1, 0, 1])
    with pytest.raises(NetphysError, match=r"'boxes' parameter of iter_patches"):
        iter_patches(images, [[0, 8, 3, 3]])  # validated eagerly, before iteration


def test_rf_table_small_vgg(small_vgg):
    table = rf_table(small_vgg, 64, ["conv1_1", "pool5", "fc6"])
    assert table["layer"].tolist() == ["conv1_1", "pool5", "fc6"]
    assert table["rf_size"].tolist() == [3, 212, 64]
    assert table["full_image"].tolist() == [False, False, True]
    assert table.loc[0, "clipped_sizes"] == (2, 3)
    assert table.loc[1, "shape"] == (128, 2, 2)


# --------------------------------------------------------------------------------------------------
# (g) batched, bounded gradient probes give the boxes of the plain per-unit loop (bench's reference)
# --------------------------------------------------------------------------------------------------
def _naive():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "rf_gradient.py"
    spec = importlib.util.spec_from_file_location("_bench_rf_gradient", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.naive_gradient_boxes


def _same_as_naive(model, layer, chans, rows, cols, size, **kw):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = gradient_receptive_fields(model, layer, chans, rows, cols, size, n_samples=4, **kw)
        ref, dead = _naive()(model, layer, chans, rows, cols, size, n_samples=4, **kw)
    assert np.array_equal(np.ma.getmaskarray(new).any(1), dead), layer
    assert np.array_equal(new.data, ref), (layer, new.data.tolist(), ref.tolist())
    return new


@pytest.mark.parametrize("model_name, size, layers", [
    ("vgg11", 64, ["pool1", "conv3_1"]),
    ("alexnet", 63, ["conv2", "pool2"]),
])
def test_batched_probes_equal_plain_loop(request, model_name, size, layers):
    model = request.getfixturevalue(model_name)
    for layer in layers:
        shape = layer_geometry(model, layer, size).shape
        chans, rows, cols = _unit_sample(shape, 6, seed=3)
        new = _same_as_naive(model, layer, chans, rows, cols, size, batch_size=5)
        assert (new.data[~np.ma.getmaskarray(new).any(1), 1] > 0).all()  # real, non-empty boxes
        _same_as_naive(model, layer, None, rows[:4], cols[:4], size)  # whole position
    # thresholded (effective) RFs and random probes alone take the other paths
    shape = layer_geometry(model, layers[-1], size).shape
    chans, rows, cols = _unit_sample(shape, 4, seed=4)
    _same_as_naive(model, layers[-1], chans, rows, cols, size, threshold=0.2)
    _same_as_naive(model, layers[-1], chans, rows, cols, size, structural=False)
    assert _no_hooks(model) and not model.training


def test_batched_probes_equal_plain_loop_resnet(resnet18):
    from netphys.rf.geometry import _output_shape, _resolve_module

    for layer, n_boxes in [("layer2.0.conv1", 4), ("layer3.1.conv2", 1)]:
        info, module = _resolve_module(resnet18, layer, "t")
        shape = _output_shape(resnet18, module, info.module, (64, 64), 3, "t")
        chans, rows, cols = _unit_sample(shape, 4, seed=5)
        new = _same_as_naive(resnet18, layer, chans, rows, cols, 64)
        # layer2: border units get distinct clipped boxes; layer3 (RF > 64 px): the whole image
        assert len({tuple(b) for b in new.data.tolist()}) >= n_boxes
        if n_boxes == 1:
            assert (new.data == [0, 64, 0, 64]).all()


def test_bound_falls_back_to_image_behind_functional_gates():
    """A functional ReLU is not linearised: the connectivity bound is off and every probe runs."""
    from netphys.rf import _probe
    from netphys.rf.gradient import _structural_gradients

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 3, 3), nn.Conv2d(3, 2, 3)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    model = Functional().eval()
    x = torch.randn(1, 1, 12, 12, requires_grad=True)
    with _structural_gradients(model):
        assert not _probe.dense_graph(model(x))
    seq = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 3)).eval()
    with _structural_gradients(seq):
        assert _probe.dense_graph(seq(x))
    assert not _probe.dense_graph(seq(x))  # without the structural hooks: gates and pools
    _same_as_naive(model, "b", [0, 1, 1], [0, 3, 7], [0, 7, 2], 12)
    _same_as_naive(seq, "3", [0, 1, 1], [0, 1, 2], [0, 2, 1], 12)


def test_progress_bar_does_not_change_results(small_vgg, capsys):
    kw = dict(n_samples=2, random_state=1)
    quiet = gradient_receptive_fields(small_vgg, "conv2_1", [0, 3], [0, 9], [5, 15], 32, **kw)
    assert "gradient RFs conv2_1" not in capsys.readouterr().err
    shown = gradient_receptive_fields(small_vgg, "conv2_1", [0, 3], [0, 9], [5, 15], 32, progress=True, **kw)
    assert "gradient RFs conv2_1" in capsys.readouterr().err
    assert np.array_equal(quiet, shown) and np.array_equal(quiet.mask, shown.mask)
    via = receptive_fields(small_vgg, "conv2_1", [0, 9], [5, 15], 32, method="gradient", channels=[0, 3],
                           progress=True, **kw)
    assert np.array_equal(via, quiet)
    with pytest.raises(NetphysError, match=r"the 'progress' parameter of gradient_receptive_fields must be "
                                           r"True or False, got 'yes'"):
        gradient_receptive_fields(small_vgg, "conv2_1", 0, 1, 1, 32, progress="yes")


# --------------------------------------------------------------------------------------------------
# (h) windowed backward (CPU fast path): the gradients and connectivity of plain autograd
# --------------------------------------------------------------------------------------------------
def _graphs(model, layer, size, structural=False, seed=0):
    from netphys.rf import _probe
    from netphys.rf.geometry import _resolve_module
    from netphys.rf.gradient import _structural_gradients

    info, _ = _resolve_module(model, layer, "t")
    state = {}
    x = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(seed))
    with _probe.stopping_hook(model, info.module, state), torch.enable_grad():
        with _structural_gradients(model) if structural else contextlib.nullcontext():
            return _probe.layer_output(model, state, x, "t")


@pytest.mark.parametrize("model_name, size, layer", [
    ("resnet18", 64, "layer2.1.conv2"), ("resnet18", 64, "layer3.0.relu"), ("alexnet", 63, "pool2"),
    ("vgg11", 64, "conv3_1"),
])
def test_windowed_gradients_equal_autograd(request, model_name, size, layer):
    """Each unit's gradient, walked window by window, is autograd's (same support, same values up to
    the order of summation), on the random graph and on the structural one; the connectivity boxes of
    the support graph are those of a NaN cotangent through autograd."""
    from netphys.rf import _probe, _window

    model = request.getfixturevalue(model_name)
    for structural in (False, True):
        leaf, out = _graphs(model, layer, size, structural)
        c, h, w = out.shape[1:]
        chans, rows, cols = _unit_sample((c, h, w), 6, seed=7)
        rows, cols = np.r_[rows, rows[-1]], np.r_[cols, cols[-1]]  # two units at one position
        chans = np.r_[chans, (chans[-1] + 1) % c]
        ref = _probe.batched_input_grads(out, leaf, _probe.unit_cotangents(out, chans, rows, cols))
        win = _window.WindowedGraph(out, leaf)
        groups = []
        for i in range(rows.size - 1):
            cot = torch.zeros((2 if i == rows.size - 2 else 1, c))
            cot[0, chans[i]] = 1
            if i == rows.size - 2:
                cot[1, chans[i + 1]] = 1
            groups.append((cot, rows[i], cols[i]))
        got = torch.cat(win.input_grads(groups))
        assert torch.equal(got != 0, ref != 0), (model_name, layer, structural)
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
        (whole,) = win.input_grads([(torch.ones((1, c)), rows[0], cols[0])])  # channels=None
        ref = _probe.batched_input_grads(out, leaf, _probe.unit_cotangents(out, None, rows[:1], cols[:1]))
        assert torch.equal(whole != 0, ref != 0)
        if structural:
            v = torch.zeros((rows.size,) + tuple(out.shape))
            v[torch.arange(rows.size), 0, :, torch.as_tensor(rows), torch.as_tensor(cols)] = float("nan")
            nan_boxes = _probe.boxes_of(_probe.batched_input_grads(out, leaf, v) != 0)
            assert np.array_equal(_window.SupportGraph(out, leaf).boxes(rows, cols), nan_boxes)


def test_windowed_path_is_taken_and_falls_back():
    """Convolutional CPU graphs take the windowed path; unknown nodes (when the graph is built) and a
    broadcast (found during the walk) fall back to plain autograd with the same boxes."""
    from netphys.rf import _window
    from netphys.rf.gradient import _Probes

    class Broadcast(nn.Module):  # y + (a 1 x 1 map from y): only known nodes, a broadcasting sum
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 3, 8), nn.Conv2d(3, 2, 3)

        def forward(self, x):
            y = torch.relu(self.a(x))
            return self.c(y + self.b(y))

    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 3)).eval()
    silu = nn.Sequential(nn.Conv2d(1, 3, 3), nn.SiLU(), nn.Conv2d(3, 2, 3)).eval()
    padded = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(1, 3, 3, stride=2), nn.ReLU6(),
                           nn.Conv2d(3, 2, 3, padding=1)).eval()  # TF-style 'same' padding, ReLU6
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    rows, cols = np.array([0, 1, 3]), np.array([2, 0, 3])
    for m in (seq, padded):
        assert _Probes(x, m(x.clone()), [0, 1, 1], rows, cols, (8, 8), 4, {}).win is not None
    _same_as_naive(padded, "3", [0, 1, 1], rows, cols, 8)
    assert _Probes(x, silu(x.clone()), [0, 1, 1], rows, cols, (8, 8), 4, {}).win is None
    with pytest.raises(_window.Unsupported, match="SiluBackward0"):
        _window.WindowedGraph(silu(x.clone()), x)
    model = Broadcast().eval()
    out = model(x.clone())
    probes = _Probes(x, out, np.array([0, 1, 1]), rows, cols, (8, 8), 4, {})
    assert probes.win is not None  # found only during the walk
    parts = list(probes.chunks(np.arange(3)))
    assert probes.win is None and sorted(np.concatenate([p for p, _ in parts]).tolist()) == [0, 1, 2]
    _same_as_naive(model, "c", [0, 1, 1], rows, cols, 8)
    _same_as_naive(silu, "2", [0, 1, 1], rows, cols, 8)

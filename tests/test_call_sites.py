"""Recording by call site: shared modules, block outputs, functional and non-ReLU activations.

Every recorded value is checked against the same quantity computed by hand, running the network's
sub-modules one by one on the stimuli's input tensor.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from netphys._validation import NetphysError
from netphys.models import layer_infos, load_model, resolve_layer
from netphys.recording import layer_shapes, record, sample_units, unit_table
from netphys.stimuli import StimulusSet


def no_hooks_left(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _model(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    # random BN statistics, so that a skipped batch norm or a wrong call changes the values
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


@pytest.fixture(scope="module")
def stim(request):
    rng = np.random.default_rng(0)
    return StimulusSet.from_arrays(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))


def _input(stim):
    return next(iter(stim.batches(len(stim))))[1]


def _at(rec, layer, full):
    """The recorded units of ``layer`` and the same units read from the hand-computed ``full`` map."""
    sel = rec.sel(unit=rec.layer == layer)
    full = full.detach().numpy()
    if full.ndim == 2:
        return sel.values, full[:, sel.channel.values]
    return sel.values, full[:, sel.channel.values, sel.row.values, sel.col.values]


def _check(rec, layer, full):
    got, want = _at(rec, layer, full)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- ResNet-18


@pytest.fixture(scope="module")
def resnet18():
    return _model("resnet18")


def _resnet_stem_to(model, x, stage, block):
    """Input of ``model.layer<stage>[block]``, by hand."""
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for s in range(1, stage + 1):
            layer = getattr(model, f"layer{s}")
            for b, blk in enumerate(layer):
                if s == stage and b == block:
                    return h
                h = blk(h)
    raise AssertionError


def test_resnet18_shared_relu_calls_and_block_outputs(resnet18, stim):
    m = resnet18
    x = _input(stim)
    h = _resnet_stem_to(m, x, 3, 1)
    blk = m.layer3[1]
    with torch.no_grad():
        inner = F.relu(blk.bn1(blk.conv1(h)))               # first call of the shared relu
        conv2 = blk.conv2(inner)
        out = F.relu(blk.bn2(conv2) + h)                     # second call: the block output
    sites = ["layer3.1.relu:0", "layer3.1.relu:1", "layer3.1", "layer3"]
    rec = record(m, stim, sites, units=40)
    _check(rec, "layer3.1.relu:0", inner)
    for name in ("layer3.1.relu:1", "layer3.1", "layer3"):
        _check(rec, name, out)
    assert not np.allclose(*_at(rec, "layer3.1.relu:0", out))  # the two calls really differ
    assert set(rec.sel(unit=rec.layer == "layer3").kind.values) == {"block"}
    assert set(rec.sel(unit=rec.layer == "layer3.1.relu:1").call_site.values) == {"layer3.1.relu:1"}
    # pre / post of the block's convs: conv1 -> relu call 0, conv2 -> bn2 -> + skip -> relu call 1
    pre = record(m, stim, ["layer3.1.conv1", "layer3.1.conv2"], units=40, site="pre")
    post = record(m, stim, units=unit_table(pre),
                  site="post")
    with torch.no_grad():
        conv1 = blk.conv1(h)
    name1, name2 = resolve_layer(m, "layer3.1.conv1").alias, resolve_layer(m, "layer3.1.conv2").alias
    _check(pre, name1, conv1)
    _check(pre, name2, conv2)
    _check(post, name1, inner)
    _check(post, name2, out)
    assert set(post.sel(unit=post.layer == name1).call_site.values) == {"layer3.1.relu:0"}
    assert set(post.sel(unit=post.layer == name2).call_site.values) == {"layer3.1.relu:1"}
    assert no_hooks_left(m)


def test_resnet18_ambiguous_site_is_refused(resnet18, stim):
    with pytest.raises(NetphysError, match=r"the 'layers' parameter of record must be call sites that run once "
                       r"per forward pass, got 'layer3\.1\.relu'; module 'layer3\.1\.relu' runs 2 times per "
                       r"forward pass .*name one call as layers=\['layer3\.1\.relu:0'\] \.\.\. "
                       r"\['layer3\.1\.relu:1'\], or the block 'layer3\.1' for its output"):
        record(resnet18, stim, ["layer3.1.relu"], units=5)
    with pytest.raises(NetphysError, match=r"the 'layers' parameter of sample_units must be a call index < 2 "
                       r"\(module 'layer3\.1\.relu' runs 2 times per forward pass\), got 'layer3\.1\.relu:2'"):
        sample_units(resnet18, ["layer3.1.relu:2"], units=5, input_size=64)
    with pytest.raises(NetphysError, match=r"names an unknown layer, got 'layer9'.*'<name>:k' its k-th call"):
        record(resnet18, stim, ["layer9"], units=5)
    assert no_hooks_left(resnet18)


def test_resnet18_shapes_and_default_layers(resnet18, stim):
    shapes = layer_shapes(resnet18, ["layer3.1.relu:0", "layer3", "layer4.1", "fc"], 64)
    assert shapes == {"layer3.1.relu:0": (256, 4, 4), "layer3": (256, 4, 4), "layer4.1": (512, 2, 2),
                      "fc21": (1000,)}
    rec = record(resnet18, stim, units=3, site="post")  # every conv and fc: each post resolves
    assert rec.sizes["unit"] == 3 * len([li for li in layer_infos(resnet18) if li.kind in ("conv", "fc")])
    assert np.isfinite(rec.values).all()


# ----------------------------------------------------------------------------- ResNet-50


def test_resnet50_bottleneck_sites(stim):
    m = _model("resnet50")
    x = _input(stim)
    h = _resnet_stem_to(m, x, 2, 0)
    blk = m.layer2[0]
    with torch.no_grad():
        a1 = F.relu(blk.bn1(blk.conv1(h)))
        c2 = blk.conv2(a1)
        a2 = F.relu(blk.bn2(c2))
        c3 = blk.conv3(a2)
        skip = blk.downsample(h)
        out = F.relu(blk.bn3(c3) + skip)
    alias = {n: resolve_layer(m, n).alias for n in ("layer2.0.conv2", "layer2.0.conv3", "layer2.0.downsample.0")}
    names = list(alias.values())
    pre = record(m, stim, names, units=30, site="pre")
    table = unit_table(pre)
    post = record(m, stim, units=table, site="post")
    _check(pre, alias["layer2.0.conv2"], c2)
    _check(pre, alias["layer2.0.conv3"], c3)
    _check(pre, alias["layer2.0.downsample.0"], blk.downsample[0](h))
    _check(post, alias["layer2.0.conv2"], a2)
    _check(post, alias["layer2.0.conv3"], out)
    _check(post, alias["layer2.0.downsample.0"], out)  # the skip path joins the sum before relu call 2
    got = post.call_site.values
    assert {str(v) for v in got[post.layer.values == alias["layer2.0.conv2"]]} == {"layer2.0.relu:1"}
    blocks = record(m, stim, ["layer2.0.relu:0", "layer2.0.relu:2", "layer2.0"], units=30)
    _check(blocks, "layer2.0.relu:0", a1)
    _check(blocks, "layer2.0.relu:2", out)
    _check(blocks, "layer2.0", out)


# ----------------------------------------------------------------------------- MobileNetV3-small


def test_mobilenet_v3_hardswish_and_linear_bottleneck(stim):
    m = _model("mobilenet_v3_small")
    x = _input(stim)
    with torch.no_grad():
        h = m.features[:4](x)
        blk = m.features[4].block  # expand (conv-bn-hardswish), depthwise (+hardswish), SE, project
        expand = blk[0][0](h)
        e = F.hardswish(blk[0][1](expand))
        dw = F.hardswish(blk[1][1](blk[1][0](e)))
        se = blk[2]
        s1 = se.fc1(F.adaptive_avg_pool2d(dw, 1))
        s2 = se.fc2(F.relu(s1))
        scaled = F.hardsigmoid(s2) * dw
        proj = blk[3][0](scaled)
        block_out = blk[3][1](proj)  # features.4 has no residual (stride 2)
    assert isinstance(blk[0][2], nn.Hardswish)
    a = {n: resolve_layer(m, n).alias for n in ("features.4.block.0.0", "features.4.block.2.fc1",
                                                  "features.4.block.2.fc2", "features.4.block.3.0")}
    pre = record(m, stim, list(a.values()), units=8, site="pre", allow_fewer=True)
    table = unit_table(pre)
    post = record(m, stim, units=table, site="post")
    _check(pre, a["features.4.block.0.0"], expand)
    _check(post, a["features.4.block.0.0"], e)                       # Hardswish, not the conv output
    _check(post, a["features.4.block.2.fc1"], F.relu(s1))
    _check(post, a["features.4.block.2.fc2"], F.hardsigmoid(s2))
    _check(post, a["features.4.block.3.0"], proj)                    # no activation: its own output
    cs = dict(zip(post.layer.values, post.call_site.values))
    assert cs[a["features.4.block.0.0"]] == "features.4.block.0.2"
    assert cs[a["features.4.block.3.0"]] == "features.4.block.3.0"
    assert not np.allclose(*_at(post, a["features.4.block.0.0"], expand))
    blocks = record(m, stim, ["features.4", "features.4.block.2"], units=20)
    _check(blocks, "features.4", block_out)
    _check(blocks, "features.4.block.2", scaled)


# ----------------------------------------------------------------------------- hand-built nets


class SharedFunctional(nn.Module):
    """One ReLU module used after two convs; functional activations after two others."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv4 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv5 = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.act(self.conv1(x))             # shared relu, call 0
        y = F.relu(self.bn2(self.conv2(x)))     # functional, after a batch norm
        z = self.act(self.conv3(y))             # shared relu, call 1
        w = torch.sigmoid(self.conv4(z))        # functional, non-ReLU
        v = F.leaky_relu(self.conv5(w) + w, 0.3)  # functional after a residual sum: no hook reads it
        return self.fc(v.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def handmade():
    torch.manual_seed(3)
    net = SharedFunctional().eval()
    with torch.no_grad():
        net.bn2.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1, 0.0]))
        net.bn2.running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 0.7]))
    return net


def test_hand_built_shared_and_functional_activations(handmade, stim):
    n = handmade
    x = _input(stim)
    with torch.no_grad():
        c1 = n.conv1(x)
        a1 = F.relu(c1)
        c2 = n.conv2(a1)
        a2 = F.relu(n.bn2(c2))
        c3 = n.conv3(a2)
        a3 = F.relu(c3)
        c4 = n.conv4(a3)
        a4 = torch.sigmoid(c4)
    infos = {li.module: li for li in layer_infos(n)}
    assert infos["conv1"].activation is None  # the shared module is not "the" activation of conv1
    assert str(infos["conv1"].post) == "act:0" and str(infos["conv3"].post) == "act:1"
    assert str(infos["conv2"].post) == "relu(bn2)" and str(infos["conv4"].post) == "sigmoid(conv4)"
    layers = ["conv1", "conv2", "conv3", "conv4"]
    pre = record(n, stim, layers, units=30, site="pre")
    post = record(n, stim, units=unit_table(pre),
                  site="post")
    for layer, p, q in (("conv1", c1, a1), ("conv2", c2, a2), ("conv3", c3, a3), ("conv4", c4, a4)):
        _check(pre, layer, p)
        _check(post, layer, q)
    cs = dict(zip(post.layer.values, post.call_site.values))
    assert cs == {"conv1": "act:0", "conv2": "relu(bn2)", "conv3": "act:1", "conv4": "sigmoid(conv4)"}
    calls = record(n, stim, ["act:0", "act:1"], units=20)
    _check(calls, "act:0", a1)
    _check(calls, "act:1", a3)
    # reduce="channel_mean" reads the same sites
    cm = record(n, stim, ["conv2"], units="all", site="post", reduce="channel_mean")
    np.testing.assert_allclose(cm.values, a2.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)


def test_functional_activation_no_hook_can_read_is_refused(handmade, stim):
    with pytest.raises(NetphysError, match=r"the 'site' parameter of record must be a site that can be read for "
                       r"layer 'conv5', got 'post'; its activation 'leaky_relu' is a function applied to the "
                       r"result of <built-in function add>.*record site='pre'"):
        record(handmade, stim, ["conv5"], units=5, site="post")
    rec = record(handmade, stim, ["conv5"], units=5, site="pre")  # 'pre' stays recordable
    assert np.isfinite(rec.values).all()
    with pytest.raises(NetphysError, match=r"the 'layers' parameter of record must be call sites that run once "
                       r"per forward pass, got 'act'; module 'act' runs 2 times"):
        record(handmade, stim, ["act"], units=5)
    assert no_hooks_left(handmade)


class Untraceable(nn.Module):
    """Data-dependent control flow (torch.fx cannot trace it) and a shared activation module."""

    def __init__(self, share):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.act2 = nn.ReLU()
        self.share = share

    def forward(self, x):
        x = self.act1(self.conv1(x))
        if x.sum() > 0:  # data-dependent
            x = x * 1.0
        x = self.conv2(x)
        return self.act1(x) if self.share else self.act2(x)


def test_untraceable_model_falls_back_and_checks_calls(stim):
    torch.manual_seed(0)
    net = Untraceable(share=False).eval()
    infos = {li.module: li for li in layer_infos(net)}
    assert not infos["conv1"].traced and infos["conv1"].activation == "act1"
    x = _input(stim)
    rec = record(net, stim, ["conv1", "conv2"], units=20, site="post")
    with torch.no_grad():
        a1 = F.relu(net.conv1(x))
        a2 = F.relu(net.conv2(a1))
    _check(rec, "conv1", a1)
    _check(rec, "conv2", a2)
    shared = Untraceable(share=True).eval()
    # registration order names act1 after conv1, but it runs twice: refused, not read at its first call
    with pytest.raises(NetphysError, match=r"the 'site' parameter of record must be a layer whose activation runs "
                       r"once per forward pass, got 'post'; module 'act1' runs 2 times per forward pass"):
        record(shared, stim, ["conv1"], units=5, site="post")
    assert no_hooks_left(shared)


# ----------------------------------------------------------------------------- VGG unchanged


@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn", "alexnet"])
def test_vgg_post_sites_are_the_registration_order_relu(name):
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    named = dict(model.named_modules())
    for li in layer_infos(model):
        if li.kind in ("conv", "fc") and li.activation is not None:
            assert li.traced and li.post is not None and li.post.call is None and li.post.fn is None
            assert li.post.module == li.activation and isinstance(named[li.activation], nn.ReLU)
    assert layer_infos(model)[-1].post is None  # the logits


def test_netphys_vgg16_post_sites():
    model = load_model("netphys_vgg16", weights="random")
    infos = [li for li in layer_infos(model) if li.kind in ("conv", "fc")]
    assert all(li.traced for li in infos)
    assert [li.activation for li in infos][:2] == ["features.2", "features.5"]  # after the batch norm
    assert all(li.post.module == li.activation for li in infos if li.activation)


def test_ablate_post_uses_the_traced_call_site(handmade):
    """site="post" clamps the activation call that follows the layer, also shared and functional ones."""
    from netphys.interventions import ablate_units

    n = handmade
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))

    def manual(clamp1=None, clamp2=None, clamp3=None, clamp4=None):
        def z(t, ch, v=0.0):
            if ch is None:
                return t
            t = t.clone()
            t[:, ch] = v
            return t
        with torch.no_grad():
            a1 = z(F.relu(n.conv1(x)), clamp1)
            a2 = z(F.relu(n.bn2(n.conv2(a1))), clamp2)
            a3 = z(F.relu(n.conv3(a2)), clamp3)
            a4 = z(torch.sigmoid(n.conv4(a3)), clamp4, 0.25)
            v = F.leaky_relu(n.conv5(a4) + a4, 0.3)
            return n.fc(v.mean(dim=(2, 3)))

    with torch.no_grad():
        np.testing.assert_allclose(n(x).numpy(), manual().numpy(), rtol=1e-5, atol=1e-6)
        # the shared module 'act' only at its call after conv3 (call 1), not after conv1
        with ablate_units(n, "conv3", [1, 2]):
            np.testing.assert_allclose(n(x).numpy(), manual(clamp3=[1, 2]).numpy(), rtol=1e-5, atol=1e-6)
        with ablate_units(n, "conv1", [0]):
            np.testing.assert_allclose(n(x).numpy(), manual(clamp1=[0]).numpy(), rtol=1e-5, atol=1e-6)
        # functional relu after a batch norm: clamped through its input
        with ablate_units(n, "conv2", [3]):
            np.testing.assert_allclose(n(x).numpy(), manual(clamp2=[3]).numpy(), rtol=1e-5, atol=1e-6)
        # functional sigmoid: value 0.25 after the sigmoid
        with ablate_units(n, "conv4", [0, 2], value=0.25):
            np.testing.assert_allclose(n(x).numpy(), manual(clamp4=[0, 2]).numpy(), rtol=1e-5, atol=1e-5)
        # twice through the model inside one block: the call counter restarts every forward pass
        with ablate_units(n, "conv3", [1]):
            n(x)
            np.testing.assert_allclose(n(x).numpy(), manual(clamp3=[1]).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(NetphysError, match=r"the 'site' parameter of ablate_units must be a value its activation "
                       r"'sigmoid' can take, got 'post'.*value=0.0; ablate site='pre'"):
        with ablate_units(n, "conv4", [0]):
            pass
    with pytest.raises(NetphysError, match=r"the 'site' parameter of ablate_units must be a site a hook can change.*"
                       r"leaky_relu"):
        with ablate_units(n, "conv5", [0]):
            pass
    assert no_hooks_left(n)


def test_ablate_post_on_resnet_block():
    """ResNet's shared relu: conv1's post site is relu:0 inside the block, conv2's the block output."""
    from netphys.interventions import ablate_units

    model = _model("resnet18")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    blk = model.layer2[0]
    seen = {}

    def grab(name):
        def fn(_m, _i, out):
            seen.setdefault(name, []).append(out.detach().clone())
        return fn

    with torch.no_grad():
        for layer, call in (("layer2.0.conv1", 0), ("layer2.0.conv2", 1)):
            seen.clear()
            with ablate_units(model, layer, [5, 9]):
                # registered after the clamp: they see the clamped outputs
                h = blk.relu.register_forward_hook(grab("relu"))
                h2 = blk.register_forward_hook(grab("block"))
                try:
                    model(x)
                finally:
                    h.remove()
                    h2.remove()
            outs = seen["relu"]
            assert len(outs) == 2
            assert (outs[call][:, [5, 9]] == 0).all()
            other = outs[1 - call][:, [5, 9]]
            assert (other != 0).any()  # the other call of the shared relu is untouched
        assert (seen["block"][0][:, [5, 9]] == 0).all()  # conv2's post site is the block output
    assert no_hooks_left(model)


def test_centre_units_and_gratings_on_block_sites():
    from netphys.recording.gratings import centre_units, grating_responses
    from netphys.stimuli.gratings import gratings

    model = _model("resnet18")
    table = centre_units(model, ["layer3", "layer3.1.relu:1", "conv1"], 64)
    got = table.groupby("layer", sort=False).agg(n=("channel", "size"), row=("row", "first"))
    assert got.loc["layer3", "n"] == 256 and got.loc["layer3", "row"] == 2  # 64 px -> 4 x 4 map
    assert got.loc["layer3.1.relu:1", "n"] == 256
    assert got.loc["conv1", "n"] == 64 and got.loc["conv1", "row"] == 16
    stim = gratings(64)
    rec = grating_responses(model, stim, ["layer3", "layer3.1.relu:1"])
    a = rec.sel(unit=rec.layer == "layer3").values
    b = rec.sel(unit=rec.layer == "layer3.1.relu:1").values
    np.testing.assert_allclose(a, b, rtol=1e-6)  # the block output is its last relu call


def test_list_layers_shows_call_sites(handmade):
    from netphys.models import list_layers

    t = list_layers(handmade).set_index("module")
    assert t.loc["conv1", "post_site"] == "act:0" and t.loc["conv3", "post_site"] == "act:1"
    assert t.loc["conv2", "post_site"] == "relu(bn2)" and t.loc["conv5", "post_site"] == "unreadable"
    assert t["calls"].tolist() == [1] * len(t)
    r = list_layers(_model("resnet18")).set_index("module")
    assert r.loc["layer2.0.conv2", "post_site"] == "layer2.0.relu:1"

"""Objectives: the same values as record, one forward per model, gradients, combinations, interventions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from netphys._validation import NetphysError
from netphys.interventions import ablate_units
from netphys.models import load_model
from netphys.recording import record
from netphys.recording.capture import Capture
from netphys.models.layers import CallSite
from netphys.stimuli import StimulusSet
from netphys.synthesis.objectives import ChannelMean, Logit, NeuralModel, Unit, model_input


class Tiny(nn.Module):
    """conv(3->4, 3x3) -> ReLU -> global mean -> fc(4->2); counts its forward calls per module."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.fc_calls = 0

    def forward(self, x):
        x = self.relu(self.conv(x))
        self.fc_calls += 1
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny():
    return load_model(Tiny(), "user", preprocess={"mean": [0.5] * 3, "std": [0.25] * 3}, input_size=8)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(5, 3, 8, 8, generator=g)


def _stimuli(images, model):
    arr = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return StimulusSet.from_arrays(arr, preprocess=model.netphys.preprocess), torch.from_numpy(arr).permute(0, 3, 1, 2) / 255.0


def test_model_input_applies_recorded_preprocessing(tiny, images):
    x = model_input(tiny, images)
    torch.testing.assert_close(x, (images - 0.5) / 0.25)


@pytest.mark.parametrize("site", ["pre", "post"])
def test_unit_equals_record(tiny, images, site):
    stim, raw = _stimuli(images, tiny)
    table = pd.DataFrame({"layer": ["conv"] * 3, "channel": [0, 1, 3], "row": [0, 4, 7], "col": [2, 5, 7]})
    rec = record(tiny, stim, units=table, site=site)
    obj = Unit(tiny, "conv", [0, 1, 3], [0, 4, 7], [2, 5, 7], site=site)
    np.testing.assert_allclose(obj(raw).detach().numpy(), rec.values, rtol=1e-5, atol=1e-6)
    assert obj.n_conditions == 3


def test_unit_known_value_and_gradient(tiny, images):
    """A pre-ReLU conv unit is the literal convolution sum; its gradient is the kernel / std."""
    m = tiny
    obj = Unit(m, "conv", 2, 3, 4)
    x = images.clone().requires_grad_(True)
    s = obj(x)
    xin = (images - 0.5) / 0.25
    patch = xin[:, :, 2:5, 3:6]
    want = (patch * m.conv.weight[2]).sum(dim=(1, 2, 3)) + m.conv.bias[2]
    torch.testing.assert_close(s[:, 0], want.detach(), rtol=1e-5, atol=1e-5)
    s.sum().backward()
    g = torch.zeros_like(images)
    g[:, :, 2:5, 3:6] = m.conv.weight[2].detach() / 0.25
    torch.testing.assert_close(x.grad, g, rtol=1e-5, atol=1e-6)


def test_channel_mean_and_logit(tiny, images):
    x = (images - 0.5) / 0.25
    with torch.no_grad():
        act = torch.relu(tiny.conv(x))
        out = tiny.fc(act.mean(dim=(2, 3)))
    torch.testing.assert_close(ChannelMean(tiny, "conv", [1, 2], site="post")(images).detach(), act.mean(dim=(2, 3))[:, [1, 2]])
    torch.testing.assert_close(Logit(tiny, [1])(images).detach(), out[:, [1]])
    torch.testing.assert_close(Logit(tiny, [0, 1], softmax=True)(images).detach(), out.softmax(1))


def test_combinations_share_one_forward_and_stop_early(tiny, images):
    a, b = Unit(tiny, "conv", [0, 1]), ChannelMean(tiny, "conv", [2, 3], site="post")
    before = tiny.fc_calls
    combo = 2 * a - b / 4 + 1.0
    v = combo(images)
    assert tiny.fc_calls == before  # both read 'conv': the forward stopped before the mean and fc
    want = 2 * a(images) - b(images) / 4 + 1.0
    torch.testing.assert_close(v, want)
    assert combo.n_conditions == 2 and len(combo.names) == 2
    with_logit = a + Logit(tiny, [0])  # one condition broadcasts
    assert with_logit(images).shape == (5, 2)
    with pytest.raises(NetphysError, match="conditions"):
        Unit(tiny, "conv", [0, 1, 2]) + a
    with pytest.raises(NetphysError, match="'weight'"):
        a * "x"


def test_neural_model_from_a_fitted_linear_model(tiny, images):
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 4))
    fit = Ridge(alpha=1.0).fit(feats, feats @ rng.normal(size=(4, 3)))
    obj = NeuralModel(tiny, "conv", fit, features="channel_mean", neurons=[0, 2])
    x = (images - 0.5) / 0.25
    with torch.no_grad():
        f = torch.relu(tiny.conv(x)).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(obj(images).detach().numpy(), fit.predict(f)[:, [0, 2]], rtol=1e-4, atol=1e-5)
    with pytest.raises(NetphysError, match="fitted on 4 features"):
        NeuralModel(tiny, "conv", Ridge().fit(rng.normal(size=(10, 5)), rng.normal(size=10)), features="channel_mean")


def test_under_an_intervention_and_restored_after(tiny, images):
    obj = ChannelMean(tiny, "conv", [0, 1], site="post")
    base = obj(images)
    ablated = obj.under(ablate_units, tiny, "conv", [0])(images)
    assert torch.all(ablated[:, 0] == 0) and torch.allclose(ablated[:, 1], base[:, 1])
    torch.testing.assert_close(obj(images), base)  # undone after the evaluation
    with pytest.raises(NetphysError, match="'intervention'"):
        obj.under("not callable")


def test_hooks_gone_after_an_exception(tiny):
    obj = Unit(tiny, "conv", 0)
    with pytest.raises(NetphysError):
        obj(torch.rand(2, 3, 8))  # wrong shape: refused before any hook
    bad = torch.rand(2, 3, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    obj(bad)  # NaN flows (scores are checked by the optimisers)

    def boom(_m, _i, _o):
        raise RuntimeError("boom")
    h = tiny.conv.register_forward_pre_hook(lambda m, i: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        with pytest.raises(NetphysError, match="boom"):
            obj(torch.rand(2, 3, 8, 8))
    finally:
        h.remove()
    assert not tiny.conv._forward_hooks and not tiny.relu._forward_hooks


def test_bad_inputs(tiny, images):
    with pytest.raises(NetphysError, match="'channel'.*out of range"):
        Unit(tiny, "conv", 4)
    with pytest.raises(NetphysError, match="'row'"):
        Unit(tiny, "conv", 0, 8, 0)
    with pytest.raises(NetphysError, match="conv9"):
        Unit(tiny, "conv9", 0)
    with pytest.raises(NetphysError, match="'classes'"):
        Logit(tiny, [2])
    with pytest.raises(NetphysError, match="'images'"):
        Unit(tiny, "conv", 0)(images[:, :1])
    with pytest.raises(NetphysError, match="'images'"):
        Unit(tiny, "conv", 0)((images * 255).to(torch.uint8))


def test_capture_reads_a_shared_module_per_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(self.lin(x))

    m = Twice()
    x = torch.randn(3, 2)
    reads = {"first": (CallSite("lin", 0), lambda o: o.clone()), "second": (CallSite("lin", 1), lambda o: o.clone())}
    with Capture(m, reads) as cap:
        got = cap(x)
        got2 = cap(x)  # counters reset per forward pass
    torch.testing.assert_close(got["first"], m.lin(x))
    torch.testing.assert_close(got["second"], m.lin(m.lin(x)))
    torch.testing.assert_close(got2["second"], got["second"])
    assert not m.lin._forward_hooks
    with Capture(m, {"third": (CallSite("lin", 2), lambda o: o)}) as cap, pytest.raises(NetphysError, match="never reached"):
        cap(x)


def test_on_the_shipped_model_matches_record():
    from netphys.stimuli import demo_stimuli

    m = load_model("netphys_vgg16", "default")
    stim = demo_stimuli().take(np.arange(6))
    raw = torch.from_numpy(stim.load_images()).permute(0, 3, 1, 2).float() / 255
    table = pd.DataFrame({"layer": ["conv3_1"] * 2 + ["fc7"], "channel": [0, 5, 3], "row": [3, 4, -1], "col": [2, 2, -1]})
    rec = record(m, stim, units=table, site="post")
    a = Unit(m, "conv3_1", [0, 5], [3, 4], [2, 2], site="post")(raw)
    b = Unit(m, "fc7", 3, site="post")(raw)
    np.testing.assert_allclose(torch.cat([a, b], 1).detach().numpy(), rec.values, rtol=1e-4, atol=1e-5)

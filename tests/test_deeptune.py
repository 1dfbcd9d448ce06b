"""DeepTune: literal regularisers, known preferred images of linear units, consensus rules, stability, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from netphys._validation import NetphysError
from netphys.models import load_model
from netphys.synthesis.deeptune import (
    LAMBDA_P_DEVIATION,
    MAX_TRACE,
    deeptune,
    default_lambdas,
    lambda_sweep,
    stability,
)
from netphys.synthesis.objectives import ChannelMean, Unit
from netphys.synthesis.regularizers import gaussian_blur, jitter, lp_norm, total_variation

S = 6  # 3 x 6 x 6 = 108 pixels


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread (several threads on a loaded machine are ~20x slower); restored."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _r(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


class Filters:
    """K linear-filter units ``<w_k, x - 0.5>`` with zero-mean filters (R_p leaves the image mean free)."""

    def __init__(self, k=2, seed=0, w=None, scale=1.0):
        if w is None:
            g = torch.Generator().manual_seed(seed)
            w = torch.randn(k, 3, S, S, generator=g, dtype=torch.float64).float()
            w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        self.w = w * scale
        self.names = [f"filter{i}" for i in range(self.w.shape[0])]
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        return torch.einsum("nchw,kchw->nk", images - 0.5, self.w)


# ---------------------------------------------------------------------------------------------------------
# regularisers against literal loops
# ---------------------------------------------------------------------------------------------------------
def _lp_loop(img, p):
    vals = [float(v) for v in np.ravel(img)]
    mean = sum(vals) / len(vals)
    return sum(abs(v - mean) ** p for v in vals)


def _tv_loop(img, alpha):
    total = 0.0
    for ch in img:                                 # each channel a grayscale image of its own
        h, w = ch.shape
        for i in range(h - 1):
            for j in range(w - 1):
                dx = float(ch[i, j + 1]) - float(ch[i, j])
                dy = float(ch[i + 1, j]) - float(ch[i, j])
                total += (dx * dx + dy * dy) ** (alpha / 2)
    return total


@pytest.mark.parametrize("p", [1, 2, 3.5, 6])
def test_lp_norm_is_the_literal_sum_of_powers(p):
    x = torch.rand(3, 3, 5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = lp_norm(x, p)
    assert got.shape == (3,)
    want = [_lp_loop(x[i].numpy(), p) for i in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    # (n, H, W) is one channel; the p-th power, not the root: doubling the contrast scales by 2^p
    np.testing.assert_allclose(lp_norm(x[:, 0], p).numpy(), [_lp_loop(x[i, 0].numpy(), p) for i in range(3)])
    np.testing.assert_allclose(lp_norm(0.5 + 2 * (x - 0.5), p).numpy(), 2 ** p * got.numpy(), rtol=1e-10)


@pytest.mark.parametrize("alpha", [0.5, 1, 2, 3])
def test_total_variation_is_the_literal_finite_difference_sum(alpha):
    x = torch.rand(2, 3, 5, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = total_variation(x, alpha)
    want = [_tv_loop(x[i].numpy(), alpha) for i in range(2)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(total_variation(x[:, 1], alpha).numpy(),
                               [_tv_loop(x[i, 1:2].numpy(), alpha) for i in range(2)], rtol=1e-12)


def test_regulariser_gradients_are_finite_and_exact():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: lp_norm(t, 6), (x.clone().requires_grad_(True),))
    assert torch.autograd.gradcheck(lambda t: total_variation(t, 1), (x.clone().requires_grad_(True),))
    # flat image: TV = 0 with a zero (sub)gradient, not NaN; R_p's gradient is h - mean(h), h = p |d|^(p-1) sign d
    flat = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(total_variation(flat, 1).sum(), flat)
    assert torch.all(g == 0)
    z = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(lp_norm(z, 6).sum(), z)
    d = x - x.mean(dim=(1, 2, 3), keepdim=True)
    h = 6 * d.abs() ** 5 * d.sign()
    torch.testing.assert_close(g, h - h.mean(dim=(1, 2, 3), keepdim=True))


def test_jitter_is_a_seeded_circular_shift_per_image():
    x = torch.rand(5, 3, 7, 6, generator=torch.Generator().manual_seed(4), requires_grad=True)
    out, shifts = jitter(x, 2, torch.Generator().manual_seed(0), return_shifts=True)
    assert shifts.shape == (5, 2) and int(shifts.abs().max()) <= 2
    for k in range(5):
        torch.testing.assert_close(out[k], torch.roll(x[k], tuple(shifts[k].tolist()), dims=(1, 2)))
    again = jitter(x, 2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)
    out.sum().backward()                                     # differentiable: each pixel used once
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    assert jitter(x, 0, torch.Generator()) is x


def test_gaussian_blur_keeps_flat_images_and_mass():
    flat = torch.full((2, 3, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 1.5), flat)
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    y = gaussian_blur(x, 1.0)
    assert abs(float(y.sum()) - 1.0) < 1e-5 and float(y[0, 0, 7, 7]) < 0.2
    assert gaussian_blur(x, 0) is x


# ---------------------------------------------------------------------------------------------------------
# known preferred images
# ---------------------------------------------------------------------------------------------------------
def test_linear_unit_under_an_l2_bound_recovers_its_filter():
    obj = Filters(k=2)
    ds = deeptune(obj, image_size=S, p=2, lambda_tv=0, steps=200, lr=0.02, n_restarts=2)
    for k in range(2):
        for r in range(2):
            assert _r(ds.images[r, k] - 0.5, obj.w[k]) >= 0.9
    # the exact optimum of <w, z - 0.5> - lam ||z - mean||_2^2 is z - mean = w / (2 lam): plain gradient
    # ascent (a contraction with rate 1 - 2 lam lr = 1/2 here) reaches it
    lam = float(obj.w.abs().max()) / (2 * 0.4)               # keeps the optimum inside [0, 1]
    ds = deeptune(obj, image_size=S, p=2, lambda_p=lam, lambda_tv=0, steps=80, lr=0.25 / lam, optimizer="sgd",
                  n_restarts=1)
    img = ds.images.values[0]                                # (condition, 3, S, S)
    dev = img - img.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(dev, obj.w.numpy() / (2 * lam), atol=1e-5)
    assert _r(ds.best_image[0], obj.w[0]) > 0.9999


def test_min_direction_gives_the_negated_filter():
    obj = Filters(k=2, seed=5)
    ds = deeptune(obj, image_size=S, p=2, lambda_tv=0, steps=200, lr=0.02, n_restarts=2, direction="min")
    for k in range(2):
        assert _r(ds.best_image[k] - 0.5, obj.w[k]) <= -0.9
        assert float(ds.final_score[int(ds.best_restart[k]), k]) == float(ds.final_score[:, k].min())
    assert np.all(ds.final_score.values < 0)
    assert np.all(ds.score.isel(iteration=-1).values == ds.final_score.values)


def test_default_p6_stays_in_the_box_and_correlates_with_the_filter():
    obj = Filters(k=2, seed=6)
    ds = deeptune(obj, image_size=S, steps=150, lr=0.02, n_restarts=1)
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    for k in range(2):
        assert _r(ds.best_image[k] - 0.5, obj.w[k]) >= 0.8
    assert np.all(ds.score.values[..., -1] > ds.score.values[..., 0])


# ---------------------------------------------------------------------------------------------------------
# consensus
# ---------------------------------------------------------------------------------------------------------
def _half_agreeing():
    """Two filters equal on the left half of the image and of opposite sign (half size) on the right."""
    g = torch.Generator().manual_seed(7)
    w1 = torch.randn(1, 3, S, S, generator=g)
    agree = torch.zeros(1, 3, S, S, dtype=torch.bool)
    agree[..., : S // 2] = True
    w2 = torch.where(agree, w1, -0.5 * w1)
    return Filters(w=w1), Filters(w=w2), agree[0]


@pytest.mark.parametrize("rule", ["sign_agree", "mean_grad"])
def test_consensus_sign_agree_updates_only_the_agreeing_pixels(rule):
    a, b, agree = _half_agreeing()
    kw = dict(image_size=S, lambda_p=0, lambda_tv=0, consensus=rule, n_restarts=2, lr=0.01)
    short = deeptune([a, b], steps=1, **kw).images.values
    long = deeptune([a, b], steps=20, **kw).images.values
    moved = np.abs(long - short)[:, 0]                       # (restart, 3, S, S)
    assert np.all(moved[:, agree.numpy()] > 1e-3)             # the agreeing half moves ...
    if rule == "sign_agree":
        assert np.all(moved[:, ~agree.numpy()] == 0)          # ... the disagreeing half never does
    else:                                                     # mean of unit gradients: w1 wins by half
        dis = ~agree.numpy()
        step = (long - short)[:, 0][:, dis]
        assert np.all(np.sign(step) == np.sign(a.w[0].numpy()[dis])) and np.all(np.abs(step) > 1e-3)


def test_layouts_with_several_objectives():
    a, b = Filters(k=3, seed=1), Filters(k=3, seed=2)
    sep = deeptune([a, b], image_size=S, steps=5, n_restarts=2)
    assert sep.images.dims == ("restart", "condition", "model", "channel", "y", "x")
    assert dict(sep.images.sizes) == {"restart": 2, "condition": 3, "model": 2, "channel": 3, "y": S, "x": S}
    assert sep.score.dims == ("restart", "condition", "model", "iteration")
    assert sep.lambda_p.dims == ("condition", "model") and sep.best_image.dims[:2] == ("condition", "model")
    # separately optimised models are independent searches: model 1's images equal a run on b alone
    alone = deeptune(b, image_size=S, steps=5, n_restarts=2)
    np.testing.assert_allclose(sep.images.isel(model=1).values, alone.images.values, atol=1e-6)
    con = deeptune([a, b], image_size=S, steps=5, n_restarts=2, consensus="mean_grad")
    assert con.images.dims == ("restart", "condition", "channel", "y", "x")
    assert con.score.dims == ("restart", "condition", "model", "iteration")
    assert con.attrs["consensus"] == "mean_grad" and con.attrs["n_objectives"] == 2
    with pytest.raises(NetphysError, match=r"the 'objectives' parameter of deeptune must be objectives with "
                                           r"equal condition counts, got 'condition counts \[3, 2\]'"):
        deeptune([a, Filters(k=2)], image_size=S, steps=2)


# ---------------------------------------------------------------------------------------------------------
# settings, reproducibility, defaults
# ---------------------------------------------------------------------------------------------------------
def test_reproducible_with_a_seed_and_different_with_another():
    obj = Filters(k=2, seed=3)
    kw = dict(image_size=S, steps=8, n_restarts=2, jitter=1)
    a, b = deeptune(obj, random_state=0, **kw), deeptune(obj, random_state=0, **kw)
    c = deeptune(obj, random_state=1, **kw)
    np.testing.assert_array_equal(a.images.values, b.images.values)
    assert not np.allclose(a.images.values, c.images.values)
    assert not np.allclose(a.images.values[0], a.images.values[1])      # restarts start apart
    for key in ("p", "tv_alpha", "steps", "lr", "optimizer", "direction", "consensus", "random_state",
                "lambda_p", "lambda_tv", "lambda_rule", "objective", "image_size", "jitter", "grayscale"):
        assert key in a.attrs
    assert a.attrs["p"] == 6 and a.attrs["random_state"] == "0" and a.attrs["lambda_p"] == "default rule"


def test_results_round_trip_through_save_dataset(tmp_path):
    from netphys.io import load_dataset, save_dataset

    a, b = Filters(k=2, seed=1), Filters(k=2, seed=2)
    ds = deeptune([a, b], image_size=S, steps=3, n_restarts=2)
    back = load_dataset(save_dataset(ds, tmp_path / "dt.nc"))
    np.testing.assert_array_equal(back.images.values, ds.images.values)
    assert back.attrs["lambda_rule"] == ds.attrs["lambda_rule"] and back.attrs["steps"] == 3
    st = stability(ds)
    back = load_dataset(save_dataset(st, tmp_path / "st.nc"))
    np.testing.assert_allclose(back.model_corr.values, st.model_corr.values)


def test_default_lambdas_follow_the_objective_scale_and_the_rule():
    obj, big = Filters(k=2, seed=4), Filters(k=2, seed=4, scale=100.0)
    d, dbig = default_lambdas(obj, image_size=S), default_lambdas(big, image_size=S)
    np.testing.assert_allclose(dbig.lambda_p.values, 100 * d.lambda_p.values, rtol=1e-4)
    np.testing.assert_allclose(dbig.lambda_tv.values, 100 * d.lambda_tv.values, rtol=1e-4)
    # linear unit: the gradient is w, so g = |w| and lambda_p = |w| / (p delta^(p-1) sqrt(N))
    wn = obj.w.flatten(1).norm(dim=1).numpy()
    np.testing.assert_allclose(d.gradient_norm.values, wn, rtol=1e-5)
    np.testing.assert_allclose(d.lambda_p.values, wn / (6 * LAMBDA_P_DEVIATION ** 5 * math.sqrt(3 * S * S)),
                               rtol=1e-5)
    # the same images for a 100 times larger unit (Adam is invariant to the gradient scale)
    a = deeptune(obj, image_size=S, steps=30)
    b = deeptune(big, image_size=S, steps=30)
    np.testing.assert_allclose(a.images.values, b.images.values, atol=2e-3)
    np.testing.assert_allclose(a.lambda_p.values, d.lambda_p.values)


def test_grayscale_long_traces_and_sweep():
    obj = Filters(k=1, seed=8)
    ds = deeptune(obj, image_size=S, steps=450, n_restarts=1, grayscale=True, lr=0.02)
    v = ds.images.values
    np.testing.assert_array_equal(v[:, :, 0], v[:, :, 1])
    np.testing.assert_array_equal(v[:, :, 0], v[:, :, 2])
    every = math.ceil(450 / MAX_TRACE)
    np.testing.assert_array_equal(ds.iteration.values, np.r_[np.arange(0, 450, every), 450])
    sw = lambda_sweep(obj, image_size=S, steps=15, n_restarts=1, lambdas_p=(0.0, 1.0), lambdas_tv=(0.0, 1.0, 10.0))
    assert dict(sw.final_tv.sizes) == {"p_weight": 2, "tv_weight": 3, "restart": 1, "condition": 1}
    # more TV weight, smoother images; weights are multiples of the default rule
    tv = sw.final_tv.isel(p_weight=1, restart=0, condition=0).values
    assert tv[0] > tv[1] > tv[2]
    d = default_lambdas(obj, image_size=S)
    np.testing.assert_allclose(sw.lambda_tv.isel(p_weight=0).values[:, 0], np.array([0, 1, 10]) * d.lambda_tv.values[0])


# ---------------------------------------------------------------------------------------------------------
# bad inputs and hooks
# ---------------------------------------------------------------------------------------------------------
def _nan_objective(images):
    return torch.full((images.shape[0], 1), float("nan")) * images.sum()


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), r"the 'steps' parameter of deeptune must be an int >= 1, got 0"),
    (dict(lr=0), r"the 'lr' parameter of deeptune must be a finite number > 0, got 0"),
    (dict(lr=-0.1), r"the 'lr' parameter of deeptune must be a finite number > 0, got -0.1"),
    (dict(p=0.5), r"the 'p' parameter of deeptune must be a finite number >= 1, got 0.5; R_p needs p >= 1"),
    (dict(consensus="vote"), r"the 'consensus' parameter of deeptune must be one of None, 'mean_grad', "
                             r"'sign_agree', got 'vote'"),
    (dict(direction="up"), r"the 'direction' parameter of deeptune must be one of 'max', 'min', got 'up'"),
    (dict(optimizer="lbfgs"), r"the 'optimizer' parameter of deeptune must be one of 'adam', 'sgd'"),
    (dict(tv_alpha=0), r"the 'tv_alpha' parameter of deeptune must be a finite number > 0, got 0"),
    (dict(lambda_p=-1), r"the 'lambda_p' parameter of deeptune must be None \(the default rule\), a number >= 0"),
    (dict(lambda_tv=[1.0, 2.0, 3.0]), r"the 'lambda_tv' parameter of deeptune must be a number or an array of "
                                      r"shape \(2,\)"),
    (dict(n_restarts=0), r"the 'n_restarts' parameter of deeptune must be an int >= 1, got 0"),
])
def test_bad_inputs_give_clear_errors(kwargs, match):
    with pytest.raises(NetphysError, match=match):
        deeptune(Filters(k=2), **{"image_size": S, "steps": 2, **kwargs})


def test_bad_objectives_give_clear_errors():
    with pytest.raises(NetphysError, match=r"the 'objectives' parameter of deeptune must be objectives with "
                                           r"finite scores, got 'a non-finite score at step 0 for restart 0, "
                                           r"condition 0"):
        deeptune(_nan_objective, image_size=S, steps=3, lambda_p=1.0, lambda_tv=1.0)
    with pytest.raises(NetphysError, match=r"the 'objectives' parameter of deeptune must be an Objective or a "
                                           r"callable"):
        deeptune("conv1", image_size=S)
    with pytest.raises(NetphysError, match=r"the 'image_size' parameter of deeptune must be an int >= 2 when no "
                                           r"objective reads a model"):
        deeptune(Filters(k=1))
    with pytest.raises(NetphysError, match=r"callables returning scores \(n, n_conditions\)"):
        deeptune(lambda x: x.sum(), image_size=S)


class Flaky(nn.Module):
    """conv(3->2) -> ReLU -> mean -> fc; raises in forward once ``fail_after`` more calls have run."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(2, 2)
        self.fail_after = None

    def forward(self, x):
        if self.fail_after is not None:
            self.fail_after -= 1
            if self.fail_after < 0:
                raise RuntimeError("boom")
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


def test_no_hook_survives_an_exception_in_the_objective():
    model = load_model(Flaky(), "user", preprocess={"mean": [0.5] * 3, "std": [0.25] * 3}, input_size=8)
    model.train()
    obj = Unit(model, "conv", [0, 1])
    model.fail_after = 4                                     # probe + calibration + a few steps, then fails
    with pytest.raises(NetphysError, match="boom"):
        deeptune(obj, steps=10, n_restarts=1)
    assert all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0 for m in model.modules())
    assert model.training and all(m.training for m in model.modules())
    model.fail_after = None
    ds = deeptune(obj, steps=3, n_restarts=1)                # still usable afterwards, on its input size
    assert ds.images.sizes["y"] == 8


# ---------------------------------------------------------------------------------------------------------
# stability
# ---------------------------------------------------------------------------------------------------------
def _grating(theta_deg, cycles, size=32):
    x, y = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")    # x rows, y columns
    t = np.radians(theta_deg)
    yp = -(x - size / 2) * np.sin(t) + (y - size / 2) * np.cos(t)
    return 0.5 + 0.4 * np.cos(2 * np.pi * cycles / size * yp)


def _fake_result(imgs, dims):
    return xr.Dataset({"images": (dims, imgs.astype(np.float32))},
                      coords={d: np.arange(n) for d, n in zip(dims, imgs.shape)})


def test_stability_known_answers():
    g = np.stack([_grating(30, 5), _grating(120, 3)])              # two conditions
    imgs = np.repeat(g[None, :, None], 3, axis=2)                  # (restart=1, condition, 3, y, x)
    imgs = np.concatenate([imgs, imgs], 0)                         # identical restarts
    neg = 1.0 - imgs                                               # model 2: contrast-reversed
    both = np.stack([imgs, neg], 2)                                # (restart, condition, model, 3, y, x)
    res = _fake_result(both, ("restart", "condition", "model", "channel", "y", "x"))
    st = stability(res)
    np.testing.assert_allclose(st.restart_corr.values, 1.0, atol=1e-6)
    np.testing.assert_allclose(st.restart_similarity.values, 1.0, atol=1e-6)
    np.testing.assert_allclose(st.model_corr.isel(model=0, model_b=1).values, -1.0, atol=1e-6)
    np.testing.assert_allclose(st.model_similarity.values, -1.0, atol=1e-6)
    assert st.attrs["consensus_source"] == "mean over models"      # the mean of x and 1 - x is flat
    assert np.all(np.isnan(st.consensus_corr.values))
    op = st.orientation_power.isel(restart=0, model=0)
    assert abs(float(op.orientation[int(np.argmax(op.isel(condition=0).values))]) - 30) <= 5
    assert abs(float(op.orientation[int(np.argmax(op.isel(condition=1).values))]) - 120) <= 5
    sf = st.sf_power.isel(restart=0, model=0)
    assert float(sf.sf[int(np.argmax(sf.isel(condition=0).values))]) == 5
    assert float(sf.sf[int(np.argmax(sf.isel(condition=1).values))]) == 3
    pp = st.polar_power.isel(restart=0, model=0, condition=0)
    o, f = np.unravel_index(int(np.argmax(pp.values)), pp.shape)
    assert float(pp.orientation_bin[o]) == 30 and abs(float(pp.sf[f]) - 5) <= 1   # 15-degree, 1-cycle bins
    # an explicit consensus result: each model's image against it
    cons = _fake_result(imgs, ("restart", "condition", "channel", "y", "x"))
    st = stability(res, cons)
    np.testing.assert_allclose(st.consensus_corr.isel(model=0).values, 1.0, atol=1e-6)
    np.testing.assert_allclose(st.consensus_corr.isel(model=1).values, -1.0, atol=1e-6)
    assert "consensus_sf_power" in st and st.attrs["consensus_source"] == "deeptune consensus"


def test_stability_of_real_runs():
    a, b = Filters(k=2, seed=1), Filters(k=2, seed=1, scale=2.0)
    sep = deeptune([a, b], image_size=S, steps=60, n_restarts=2, lr=0.02)
    con = deeptune([a, b], image_size=S, steps=60, n_restarts=2, lr=0.02, consensus="mean_grad")
    st = stability(sep, con)
    assert np.all(st.model_similarity.values > 0.95)                # same filter up to scale
    assert np.all(st.consensus_similarity.values > 0.95)
    assert st.orientation_power.dims == ("restart", "condition", "model", "orientation")


# ---------------------------------------------------------------------------------------------------------
# the shipped network
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vgg():
    return load_model("netphys_vgg16", "default")


def test_unit_and_channel_mean_on_the_shipped_vgg(vgg):
    for obj in (Unit(vgg, "conv3_1", [0, 5]), ChannelMean(vgg, "conv2_1", [1, 3])):
        ds = deeptune(obj, steps=4, n_restarts=1, lr=0.02)
        assert ds.images.sizes["y"] == 64                         # the model's input size
        s = ds.score.values                                        # (restart, condition, iteration)
        assert np.all(s[..., -1] > s[..., 0])
        assert ds.attrs["objective"].startswith(repr(obj)) and "netphys_vgg16" in ds.attrs["objective"]
    assert all(len(m._forward_hooks) == 0 for m in vgg.modules())

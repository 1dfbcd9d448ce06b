"""evolve: known preferred stimuli, all restarts kept, one batched call per generation, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netphys._validation import NetphysError
from netphys.models import load_model
from netphys.synthesis.base import Generator
from netphys.synthesis.evolve import evolve, evolve_loop
from netphys.synthesis.objectives import Unit

S = 4  # 3 x 4 x 4 = 48 dimensions


class Sphere(Generator):
    """Images ``0.5 + r * c / |c|``: every image has the same distance ``r`` from mid-grey (a norm bound)."""

    name = "sphere"
    sigma0 = 0.5

    def __init__(self, size=S, r=0.4):
        super().__init__()
        self.image_size, self.latent_size, self.r = size, 3 * size * size, r

    def initial_codes(self, n, random_state=0):
        g = torch.Generator().manual_seed(int(random_state))
        return torch.randn(n, self.latent_size, generator=g).to(self.device)

    def forward(self, codes):
        if codes.dim() != 2 or codes.shape[1] != self.latent_size:
            raise NetphysError(f"the 'codes' parameter of Sphere must be (n, {self.latent_size}), got {tuple(codes.shape)}")
        c = codes / codes.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (0.5 + self.r * c / np.sqrt(3)).reshape(-1, 3, self.image_size, self.image_size)


class Filters:
    """K linear-filter units ``<w_k, x - 0.5>``; counts its calls."""

    def __init__(self, k=2, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(k, 3, S, S, generator=g)
        self.names = [f"filter{i}" for i in range(k)]
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        return torch.einsum("nchw,kchw->nk", images - 0.5, self.w)


def _r(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.mark.parametrize("optimizer", ["sep", "cholesky", "pycma"])
def test_linear_unit_prefers_its_filter_under_a_norm_bound(optimizer):
    obj = Filters()
    iters = 60 if optimizer == "pycma" else 150
    ds = evolve(obj, Sphere(), optimizer=optimizer, iterations=iters, restarts=2, random_state=0)
    for k in range(2):
        assert _r(ds.best_image[k] - 0.5, obj.w[k]) >= 0.9
    # the analytic optimum: r / sqrt(3) * |w|
    bound = 0.4 / np.sqrt(3) * obj.w.flatten(1).norm(dim=1).numpy()
    assert np.all(ds.best_score.max("restart").values <= bound + 1e-4)
    assert np.all(ds.best_score.max("restart").values >= 0.9 * bound)


def test_min_finds_the_negated_filter_and_layout():
    obj = Filters(k=3)
    ds = evolve(obj, Sphere(), iterations=120, restarts=4, direction="min", random_state=1)
    assert dict(ds.sizes) == {"restart": 4, "condition": 3, "latent": 48, "channel": 3, "y": S, "x": S,
                              "iteration": 120}
    for k in range(3):
        assert _r(ds.best_image[k] - 0.5, obj.w[k]) <= -0.9
        i = int(ds.best_restart[k])
        assert ds.best_score[i, k] == ds.best_score[:, k].min()
    # best-so-far traces are monotone in the search direction, and end at the best score
    tr = ds.score.values
    assert np.all(np.diff(tr, axis=-1) <= 1e-9)
    np.testing.assert_allclose(tr[..., -1], ds.best_score.values)
    assert list(ds.condition_name.values) == obj.names
    assert ds.attrs["direction"] == "min" and ds.attrs["restarts"] == 4


def test_one_batched_call_per_generation():
    obj = Filters()
    evolve(obj, Sphere(), iterations=7, restarts=3, batch_size=None, random_state=0)
    assert obj.calls == 1 + 7  # the probe that counts conditions, then one per generation


def test_reproducible_and_seeded():
    a = evolve(Filters(), Sphere(), iterations=20, restarts=2, random_state=0)
    b = evolve(Filters(), Sphere(), iterations=20, restarts=2, random_state=0)
    c = evolve(Filters(), Sphere(), iterations=20, restarts=2, random_state=1)
    np.testing.assert_array_equal(a.codes.values, b.codes.values)
    np.testing.assert_array_equal(a.score.values, b.score.values)
    assert not np.array_equal(a.codes.values, c.codes.values)
    # restarts start from different codes
    assert not np.array_equal(a.codes[0].values, a.codes[1].values)


def test_loop_reference_reaches_the_same_optimum():
    obj = Filters()
    loop = evolve_loop(obj, Sphere(), iterations=60, restarts=1, random_state=0)
    vec = evolve(obj, Sphere(), optimizer="sep", iterations=150, restarts=1, random_state=0)
    np.testing.assert_allclose(loop.best_score.values, vec.best_score.values, rtol=0.05)


def test_evolve_a_unit_of_a_network_under_an_intervention():
    from netphys.interventions import ablate_units

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(2 * 2 * 2, 1)

        def forward(self, x):
            return self.fc(self.relu(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    net = load_model(Net(), "user", preprocess={"mean": [0.5] * 3, "std": [0.5] * 3}, input_size=S)
    plain = Unit(net, "fc", 0)
    ablated = plain.under(ablate_units, net, "conv", [0, 1])  # fc then sees only its bias
    ds = evolve(plain - ablated, Sphere(), iterations=40, restarts=2, random_state=0)
    assert np.all(ds.best_score.values > 0)
    assert not net.conv._forward_hooks and not net.relu._forward_hooks


def test_bad_inputs():
    obj, sp = Filters(), Sphere()
    with pytest.raises(NetphysError, match="'optimizer'.*sep"):
        evolve(obj, sp, optimizer="adam")
    with pytest.raises(NetphysError, match="'sigma0'"):
        evolve(obj, sp, sigma0=0.0)
    with pytest.raises(NetphysError, match="'sigma0'"):
        evolve(obj, sp, sigma0=float("nan"))
    with pytest.raises(NetphysError, match="'iterations'"):
        evolve(obj, sp, iterations=0)
    with pytest.raises(NetphysError, match="'space'"):
        evolve(obj, "fourier")
    with pytest.raises(NetphysError, match="'objective'"):
        evolve(lambda im: torch.zeros(3), sp, iterations=2)

    def nan_after(images, _n=[0]):
        _n[0] += 1
        out = torch.einsum("nchw,kchw->nk", images - 0.5, obj.w)
        if _n[0] > 3:
            out[0, 0] = float("nan")
        return out
    with pytest.raises(NetphysError, match="NaN|non-finite"):
        evolve(nan_after, sp, iterations=10, restarts=1)
    with pytest.raises(NetphysError, match="'codes'"):
        sp(torch.zeros(2, 47))

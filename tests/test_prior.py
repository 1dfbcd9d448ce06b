"""The shipped natural-image prior (DeePSiM-style inversion of netphys_vgg16 fc6) and its trainer."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from netphys._validation import NetphysError
from netphys.synthesis.base import Generator
from netphys.synthesis.prior import (DeePSiMPrior, load_prior, prior_dir, reconstruction_scores,
                                     train_prior)


@pytest.fixture(scope="module")
def prior():
    return load_prior()


@pytest.fixture(scope="module")
def demo_images():
    from netphys.stimuli import demo_stimuli

    st = demo_stimuli()
    idx = np.arange(0, len(st), len(st) // 40)[:40]  # 4 per class
    return torch.from_numpy(np.ascontiguousarray(st.load_images(idx))).permute(0, 3, 1, 2)


def test_shipped_prior_loads_and_matches_its_manifest(prior):
    folder = prior_dir()
    man = json.loads((folder / "manifest.json").read_text())
    w = folder / man["weights_file"]
    assert hashlib.sha256(w.read_bytes()).hexdigest() == man["weights_sha256"] == prior.manifest["weights_sha256"]
    assert w.stat().st_size <= 10 * 2**20
    assert isinstance(prior, Generator)
    assert (prior.latent_size, prior.image_size, prior.channels) == (256, 64, 3)
    assert man["encoder"]["code_layer"] == "fc6:pre"
    assert man["architecture"]["latent_size"] == 256
    for key in ("data", "training", "versions", "encoder", "sigma0"):
        assert key in man
    assert man["training"]["seed"] == 0 and man["training"]["steps"] >= 1
    assert prior.sigma0 == pytest.approx(man["sigma0"]) and prior.sigma0 > 0
    d = prior.describe()
    assert d["name"] == "deepsim-prior" and d["weights_sha256"] == man["weights_sha256"]
    assert not prior.training


def test_damaged_weights_are_refused(tmp_path):
    shutil.copytree(prior_dir(), tmp_path / "p", ignore=shutil.ignore_patterns("__pycache__"))
    load_prior(tmp_path / "p")  # an intact copy loads
    w = tmp_path / "p" / "weights.pt"
    data = bytearray(w.read_bytes())
    data[-100] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(NetphysError, match="sha256"):
        load_prior(tmp_path / "p")
    with pytest.raises(NetphysError, match="'path' parameter of load_prior"):
        load_prior(tmp_path / "nowhere")


def test_outputs_shape_range_determinism_batch_invariance(prior):
    codes = prior.initial_codes(6, random_state=3)
    assert codes.shape == (6, 256) and codes.dtype == torch.float32
    assert torch.equal(codes, prior.initial_codes(6, random_state=3))
    assert not torch.equal(codes, prior.initial_codes(6, random_state=4))
    with torch.no_grad():
        y = prior(codes)
        y2 = prior(codes)
        one = prior(codes[2:3])
    assert y.shape == (6, 3, 64, 64) and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y, y2)
    torch.testing.assert_close(one, y[2:3], atol=1e-5, rtol=0)
    # samples differ from each other (not a collapsed prior)
    assert float((y[0] - y[1]).abs().mean()) > 1e-3


def test_initial_codes_follow_real_code_statistics(prior):
    c = prior.initial_codes(4000, random_state=0)
    torch.testing.assert_close(c.mean(0), prior.code_mean, atol=0.1, rtol=0)
    torch.testing.assert_close(c.std(0), prior.code_std, atol=0.1, rtol=0.1)
    diag = prior.initial_codes(4000, random_state=0, covariance="diagonal")
    torch.testing.assert_close(diag.std(0), prior.code_std, atol=0.1, rtol=0.1)
    assert prior.sigma0 == pytest.approx(float(prior.code_std.median()), rel=1e-3)
    with pytest.raises(NetphysError, match="'covariance'"):
        prior.initial_codes(2, covariance="wrong")


def test_gradient_flows_to_codes(prior):
    codes = prior.initial_codes(3, random_state=1).requires_grad_(True)
    prior(codes)[:, 0].mean().backward()
    assert codes.grad is not None and torch.isfinite(codes.grad).all()
    assert float(codes.grad.abs().sum()) > 0


def test_reconstruction_beats_the_mean_image(prior, demo_images):
    """Known answer: G(E(x)) of held-out demo images resembles x more than the mean image does."""
    sc = reconstruction_scores(prior, demo_images)
    assert sc["n"] == len(demo_images)
    assert sc["pixel_corr"] > sc["baseline_pixel_corr"] + 0.1
    # most images, not all: the shipped prior beats the mean image on 72% of 500 held-out Imagenette-64 val
    # images and on 27 of these 40 (a blurred layout cannot beat it on images whose layout is the mean's)
    assert np.mean(sc["pixel_corr_each"] > sc["baseline_pixel_corr_each"]) > 0.6
    assert sc["feature_corr"]["code"] > sc["baseline_feature_corr"]["code"]
    assert sc["reconstructions"].shape == demo_images.shape


@pytest.mark.parametrize("bad", [torch.zeros(2, 10), torch.zeros(256), torch.zeros(2, 256, dtype=torch.long),
                                 np.zeros((2, 256))])
def test_bad_codes_name_codes(prior, bad):
    with pytest.raises(NetphysError, match="'codes' parameter of DeePSiMPrior.forward"):
        prior(bad)


@pytest.fixture
def tiny_folder(tmp_path, demo_images):
    from PIL import Image

    root = tmp_path / "imgs"
    for i in range(10):
        d = root / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(demo_images[i].permute(1, 2, 0).numpy()).save(d / f"im{i}.png")
    return root


def test_tiny_training_writes_manifest_and_resumes_exactly(tiny_folder, tmp_path):
    kw = dict(steps=4, batch_size=4, width=4, disc_width=4, checkpoint_every=2, random_state=7)
    full = train_prior(tiny_folder, out=tmp_path / "full", resume=False, **kw)
    man = json.loads((tmp_path / "full" / "manifest.json").read_text())
    assert man["data"]["n_images"] == 10 and man["training"]["steps"] == 4 and man["training"]["seed"] == 7
    assert man["encoder"]["parameters_sha256"] and man["versions"]["torch"] == torch.__version__
    assert len(man["training"]["history"]) == 2 and "pixel" in man["training"]["history"][0]
    w = tmp_path / "full" / "weights.pt"
    assert hashlib.sha256(w.read_bytes()).hexdigest() == man["weights_sha256"]
    loaded = load_prior(tmp_path / "full")
    for k, v in full.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    # interrupted after 2 steps, then resumed to 4: the same weights as uninterrupted
    train_prior(tiny_folder, out=tmp_path / "part", **{**kw, "steps": 2})
    resumed = train_prior(tiny_folder, out=tmp_path / "part", resume=True, **kw)
    assert resumed.manifest["weights_sha256"] == man["weights_sha256"]
    # a checkpoint written with other settings is not silently continued
    with pytest.raises(NetphysError, match="'resume' parameter of train_prior.*lr"):
        train_prior(tiny_folder, out=tmp_path / "part", resume=True, **{**kw, "steps": 6}, lr=3e-4)


def test_train_prior_bad_inputs(tmp_path, tiny_folder):
    with pytest.raises(NetphysError, match="'images_root'"):
        train_prior(tmp_path / "missing", out=tmp_path / "o", steps=1)
    with pytest.raises(NetphysError, match="'steps'"):
        train_prior(tiny_folder, out=tmp_path / "o", steps=0)
    with pytest.raises(NetphysError, match="'loss_weights'"):
        train_prior(tiny_folder, out=tmp_path / "o", steps=1, loss_weights={"perceptual": 1.0})
    with pytest.raises(NetphysError, match="'code_layer'"):
        train_prior(tiny_folder, out=tmp_path / "o", steps=1, code_layer="fc99")


def test_untrained_prior_validates_its_settings():
    with pytest.raises(NetphysError, match="'image_size'"):
        DeePSiMPrior(256, 48)
    with pytest.raises(NetphysError, match="'latent_size'"):
        DeePSiMPrior(0)


def test_evolution_in_the_prior_space_and_the_report(tmp_path):
    """CMA-ES over the prior's codes raises a unit's activation; the experiment shows the prior's check."""
    from netphys.experiments import run_experiment

    run = run_experiment("synthesis.preferred_images", {"layers": ["conv3_1"], "units": 2, "space": "prior",
                                                        "iterations": 6, "restarts": 2, "deeptune": False},
                         tmp_path / "run", progress=False)
    res = run.result
    for v in ("prior_original", "prior_reconstruction", "prior_sample"):
        assert res[v].dims == ("prior_image", "channel", "prior_y", "prior_x")
        assert float(res[v].min()) >= 0 and float(res[v].max()) <= 1
    assert res.attrs["prior_pixel_corr"] > res.attrs["prior_baseline_pixel_corr"]
    assert res.attrs["space"] == "deepsim-prior"
    tr = res["evolve_trace"].sel(direction="max").values  # (unit, restart, generation), best so far
    assert (tr[..., -1] >= tr[..., 0]).all() and (tr[..., -1] > tr[..., 0]).any()
    html = (tmp_path / "run" / "report.html").read_text()
    assert "DeePSiM-style prior" in html and (tmp_path / "run" / "prior_check.png").is_file()


def test_shipped_prior_passes_check_generator(prior):
    """The prior is a built-in space: the plug-in conformance check holds for it as for the others."""
    from netphys.testing import check_generator

    check_generator(prior)

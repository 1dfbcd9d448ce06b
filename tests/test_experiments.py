"""Integration tests of the experiment runners on tiny data (trends are checked in slow runs only)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from netphys._validation import NetphysError
from netphys.experiments import prune_distill as pd_
from netphys.experiments.config import load_config, save_config
from netphys.experiments.population import (Fig5Config, IDLayersConfig, plot_fig5, plot_id_layers, run_fig5,
                                            run_id_layers)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """3 classes x 14 images of 32x32 with class-dependent structure (gratings, blobs, noise)."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    for c in range(3):
        d = root / f"class{c}"
        d.mkdir()
        for i in range(14):
            if c == 0:
                img = 0.5 + 0.5 * np.cos(0.6 * (xx * np.cos(i) + yy * np.sin(i)))
            elif c == 1:
                img = np.exp(-((xx - 16 - rng.integers(-6, 6)) ** 2 + (yy - 16) ** 2) / 40.0)
            else:
                img = rng.random((32, 32))
            rgb = (np.clip(np.stack([img, img * 0.8, 1 - img], -1), 0, 1) * 255).astype(np.uint8)
            Image.fromarray(rgb).save(d / f"im{i}.png")
    return root


def _cfg(folder, **kw):
    base = dict(model="netphys_vgg16", weights="random", images=str(folder), n_images=42, units=12,
                layers=("conv1_1", "conv2_1", "conv3_1", "fc6"), realisations=2, orientation_units=8,
                orientation_images=30, corner_units=8, corner_images=25, batch_size=16, n_shuffles=4)
    base.update(kw)
    return pd_.Fig3Config(**base)


def test_fig3_runs_and_is_labelled(image_folder, tmp_path):
    res = pd_.run_fig3(_cfg(image_folder), tmp_path / "run", progress=False)
    assert res["information"].dims == ("network", "realisation", "layer", "feature")
    assert list(res["layer"].values) == ["conv1_1", "conv2_1", "conv3_1", "fc6"]
    v = res["information"]
    # orientation/corner are not computed for the first two layers of the network (conv1_1, conv1_2)
    assert np.isnan(v.sel(feature=["orientation", "corner"], layer="conv1_1")).all()
    assert np.isfinite(v.sel(feature=["luminosity", "contrast", "category"])).all()
    assert np.isfinite(v.sel(feature=["orientation", "corner"], layer=["conv2_1", "conv3_1", "fc6"])).all()
    # the shuffle null sits next to every estimate, and per-unit values are labelled
    assert np.isfinite(res["null"].sel(feature="luminosity")).all()
    u = res["unit_information"]
    assert u.dims == ("network", "feature", "unit")
    assert set(np.unique(res["unit_layer"].values)) == {"conv1_1", "conv2_1", "conv3_1", "fc6"}
    np.testing.assert_allclose(u.sel(network="trained", feature="luminosity")[
        (res["unit_layer"] == "conv3_1").values & (res["unit_realisation"] == 1).values].mean(),
        v.sel(network="trained", feature="luminosity", layer="conv3_1", realisation=1), rtol=1e-5)
    assert (tmp_path / "run" / "information.nc").is_file()
    assert (tmp_path / "run" / "information.csv").is_file()
    assert json.loads(res.attrs["config"])["units"] == 12
    df = pd_.summary(res)
    assert set(df.columns) >= {"network", "layer", "feature", "mean", "sd"}


def test_fig3_reproducible_and_resumes_identically(image_folder, tmp_path, monkeypatch):
    cfg = _cfg(image_folder)
    full = pd_.run_fig3(cfg, tmp_path / "a", progress=False)
    # a run killed after a few pieces, then restarted, gives identical numbers
    calls = {"n": 0}
    real = pd_.feature_information

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 40:   # in the second realisation
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(pd_, "feature_information", dying)
    with pytest.raises(KeyboardInterrupt):
        pd_.run_fig3(cfg, tmp_path / "b", progress=False)
    monkeypatch.setattr(pd_, "feature_information", real)
    # networks x realisations x (4 layers x 3 features + 3 layers x 2 spatial features)
    n_cells = 2 * 2 * (4 * 3 + 3 * 2)
    n_stored = len(list((tmp_path / "b" / "cache").rglob("*.npz")))
    assert n_stored == n_cells // 2   # the first realisation finished before the kill
    calls2 = {"n": 0}

    def counting(*a, **k):
        calls2["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(pd_, "feature_information", counting)
    resumed = pd_.run_fig3(cfg, tmp_path / "b", progress=False)
    assert calls2["n"] == n_cells - n_stored  # only the missing pieces ran
    xr.testing.assert_equal(full["information"], resumed["information"])
    xr.testing.assert_equal(full["null"], resumed["null"])
    # no cache: same seed, same numbers
    again = pd_.run_fig3(cfg, None, progress=False)
    xr.testing.assert_equal(full["information"], again["information"])
    xr.testing.assert_equal(full["unit_information"], again["unit_information"])


def test_fig3_different_seed_differs(image_folder):
    a = pd_.run_fig3(_cfg(image_folder, realisations=1, layers=("conv2_1",)), None, progress=False)
    b = pd_.run_fig3(_cfg(image_folder, realisations=1, layers=("conv2_1",), random_state=1), None,
                     progress=False)
    assert not np.allclose(a["information"].values, b["information"].values)


def test_box_feature_cache_matches_rf_features():
    # features of several layers' boxes computed in one call per feature set, shared boxes once
    from netphys.features import rf_features

    rng = np.random.default_rng(0)
    gray = rng.random((6, 20, 24))
    a = np.array([[0, 5, 0, 5], [3, 9, 4, 10], [10, 20, 0, 24]])
    b = np.array([[3, 9, 4, 10], [0, 20, 0, 24], [2, 4, 6, 8]])      # shares one box with a
    from netphys.features.cache import BoxFeatureCache

    cache = BoxFeatureCache()
    lc, sp = ("luminosity", "contrast"), ("orientation", "corner")
    cache.prefetch(("key",), gray, [(a, lc), (b, lc), (b, sp)], None)
    assert len(cache.store) == 5
    for boxes, want in [(a, lc), (b, lc + sp)]:
        got = cache.get(boxes, want)
        exp = rf_features(gray, boxes, want)
        assert set(got) == set(exp)
        for k in exp:
            np.testing.assert_allclose(got[k], exp[k], rtol=1e-6, atol=1e-7, err_msg=k)
    with pytest.raises(KeyError):
        cache.get(a, sp)                       # spectral features of a were never requested
    cache.prefetch(("other",), gray[:2], [(a, lc)], None)   # new images: the store is reset
    assert len(cache.store) == 3 and cache.get(a, lc)["luminosity"].shape == (2, 3)


def test_select_top_rule():
    s = np.array([[0.1, 0.9, 0.5], [0.2, 0.8, 0.4], [0.3, 0.7, 0.6], [0.0, 1.0, 0.1]])
    from netphys.stats.selection import select_top

    units, imgs = select_top(s, 2, 2)
    assert units.tolist() == [1, 2]  # largest mean strength
    assert imgs[:, 0].tolist() == [3, 0] and imgs[:, 1].tolist() == [2, 0]


def test_config_roundtrip_and_unknown_key(tmp_path):
    cfg = pd_.Fig3Config(units=10, layers=("conv1_1",))
    p = save_config(cfg, tmp_path / "c.yaml")
    back = load_config(pd_.Fig3Config, p)
    assert back.units == 10 and tuple(back.layers) == ("conv1_1",)
    with pytest.raises(NetphysError, match="unknown key.*'unitz'.*valid keys are"):
        load_config(pd_.Fig3Config, {"unitz": 3})
    with pytest.raises(NetphysError, match="'site' parameter of Fig3Config must be one of"):
        pd_.Fig3Config(site="middle").validate()


def test_hybrid_networks_and_inset(image_folder):
    from netphys.models import load_model
    from netphys.models.hybrid import hybrid_model

    t = load_model("netphys_vgg16", "random", random_state=1)
    r = load_model("netphys_vgg16", "random", random_state=2)
    h = hybrid_model(t, r, 2)
    sd_h, sd_t, sd_r = h.state_dict(), t.state_dict(), r.state_dict()
    # layers 1-2 (features.0/1 conv+bn, features.3/4) from t, layer 3 on from r
    assert np.array_equal(sd_h["features.0.weight"], sd_t["features.0.weight"])
    assert np.array_equal(sd_h["features.4.weight"], sd_t["features.4.weight"])  # BN of conv1_2
    assert np.array_equal(sd_h["features.7.weight"], sd_r["features.7.weight"])  # conv2_1
    assert np.array_equal(sd_h["classifier.6.weight"], sd_r["classifier.6.weight"])
    with pytest.raises(NetphysError, match="'l_star' parameter of hybrid_model"):
        hybrid_model(t, r, 99)
    km = pd_.first_layer_kernel_means(t)
    assert km.shape == (16 * 3,)
    res = pd_.run_fig3(_cfg(image_folder, networks=("trained", "random", "hybrid:2"), realisations=1,
                            features=("luminosity",)), None, progress=False)
    assert list(res["network"].values) == ["trained", "random", "hybrid:2"]
    fig = pd_.plot_fig3(res, inset={"trained": km, "random": pd_.first_layer_kernel_means(r)})
    assert len(fig.axes[0].child_axes) == 1  # the kernel-weight inset


def test_fig5_and_id_layers(image_folder, tmp_path):
    cfg = Fig5Config(weights="random", images=str(image_folder), n_images=42, layers=("conv2_1", "fc6"),
                     pool=20, n_units=10, n_subsamples=3, n_train=10, n_val=4)
    res = run_fig5(cfg, tmp_path / "f5", progress=False)
    assert res["val_accuracy"].dims == ("network", "layer", "subsample")
    assert ((res["val_accuracy"] >= 0) & (res["val_accuracy"] <= 1)).all()
    assert res.attrs["n_train_per_class"] == 10 and res.attrs["chance"] == pytest.approx(1 / 3)
    plot_fig5(res)
    idc = IDLayersConfig(weights="random", images=str(image_folder), n_images=42, layers=("conv2_1", "fc6"),
                         units=50, realisations=2)
    rid = run_id_layers(idc, tmp_path / "id", progress=False)
    assert np.isfinite(rid["id"]).all() and (rid["id"] > 0).all()
    plot_id_layers(rid)
    # cached: a rerun loads the result
    again = run_id_layers(idc, tmp_path / "id", progress=False)
    xr.testing.assert_allclose(rid["id"], again["id"])


def _yaml(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_fig4_figC_figD_fig5_cli(image_folder, tmp_path):
    from netphys.cli import main

    common = (f"model: netphys_vgg16\nweights: random\nimages: {image_folder}\nn_images: 42\nunits: 10\n"
              "layers: [conv1_1, conv3_1]\nrealisations: 1\norientation_units: 6\norientation_images: 20\n"
              "corner_units: 6\ncorner_images: 20\nn_shuffles: 3\n")
    c4 = _yaml(tmp_path, "f4.yaml", common + "luminosity_l_stars: [1]\ncontrast_l_stars: [1, 2]\n")
    assert main(["run", "prune_distill.fig4", "--config", str(c4), "--out", str(tmp_path / "f4"),
                 "--no-progress"]) == 0
    assert (tmp_path / "f4" / "report.html").is_file() and (tmp_path / "f4" / "fig4.svg").is_file()
    res = load_dataset_nc(tmp_path / "f4" / "information.nc")
    assert list(res["network"].values) == ["trained", "random", "hybrid:1", "hybrid:2"]
    assert np.isnan(res["information"].sel(network="hybrid:2", feature="luminosity")).all()
    assert np.isfinite(res["information"].sel(network="hybrid:2", feature="contrast")).all()
    cC = _yaml(tmp_path, "fc.yaml", common)
    assert main(["run", "prune_distill.figC", "--config", str(cC), "--out", str(tmp_path / "fc"),
                 "--no-progress"]) == 0
    resC = load_dataset_nc(tmp_path / "fc" / "information.nc")
    assert json.loads(resC.attrs["config"])["site"] == "post"
    cD = _yaml(tmp_path, "fd.yaml", common + "models: [[netphys_vgg16, random]]\n")
    assert main(["run", "prune_distill.figD", "--config", str(cD), "--out", str(tmp_path / "fd"),
                 "--no-progress"]) == 0
    assert (tmp_path / "fd" / "fig3_netphys_vgg16.png").is_file()
    c5 = _yaml(tmp_path, "f5.yaml", f"weights: random\nimages: {image_folder}\nn_images: 42\nlayers: [conv2_1]\n"
               "pool: 20\nn_units: 10\nn_subsamples: 2\nn_train: 8\nn_val: 4\n")
    assert main(["run", "prune_distill.fig5", "--config", str(c5), "--out", str(tmp_path / "f5"),
                 "--no-progress"]) == 0
    assert (tmp_path / "f5" / "report.html").read_text().count("data:image/png;base64") == 1
    assert main(["run", "no_such.experiment", "--no-progress"]) == 2


def load_dataset_nc(path):
    from netphys.io import load_dataset

    return load_dataset(path)


def test_fig2_on_user_arrays(tmp_path):
    """Fig. 2 on a user's own (stimuli x neurons) files: a 5-D linear manifold read out by 120 neurons."""
    from netphys.experiments.population import Fig2Config, plot_fig2, run_fig2

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(400, 5))
    for area, n in (("V1", 120), ("LL", 80)):
        np.save(tmp_path / f"{area}.npy", latent @ rng.normal(size=(5, n)) + 0.01 * rng.normal(size=(400, n)))
    cfg = Fig2Config(datasets=(f"files:V1={tmp_path / 'V1.npy'},LL={tmp_path / 'LL.npy'}",), n_repeats=5,
                     n_boot=10, min_neurons=6, n_sizes=6)
    res = run_fig2(cfg, tmp_path / "out", progress=False)
    assert list(res["area"].values) == ["V1", "LL"]
    assert np.allclose(res["id_full"], 5, rtol=0.2)  # the manifold's dimension, whatever the population
    assert (tmp_path / "out" / "fig2_asymptotes.csv").is_file()
    plot_fig2(res)


def test_fig2_areas_with_different_numbers_of_sample_sizes(tmp_path):
    """A small area gets fewer distinct sub-population sizes; its curve is padded, not a crash."""
    from netphys.experiments.population import Fig2Config, plot_fig2, run_fig2

    rng = np.random.default_rng(1)
    latent = rng.normal(size=(300, 3))
    for area, n in (("V1", 60), ("LL", 8)):
        np.save(tmp_path / f"{area}.npy", latent @ rng.normal(size=(3, n)) + 0.01 * rng.normal(size=(300, n)))
    cfg = Fig2Config(datasets=(f"files:V1={tmp_path / 'V1.npy'},LL={tmp_path / 'LL.npy'}",), n_repeats=3,
                     n_boot=5, min_neurons=6, n_sizes=6)
    res = run_fig2(cfg, tmp_path / "out", progress=False)
    n_ok = np.isfinite(res["n_units"]).sum("size").values
    assert list(res["area"].values) == ["V1", "LL"] and n_ok[0] == 6 and 0 < n_ok[1] < 6
    assert res["n_units"].sel(area="LL").max() == 8
    plot_fig2(res)


def test_fig3_category_needs_classes(tmp_path):
    d = tmp_path / "only" / "val"
    d.mkdir(parents=True)
    for i in range(25):
        Image.fromarray(np.full((32, 32, 3), 10 * i, np.uint8)).save(d / f"{i}.png")
    cfg = pd_.Fig3Config(weights="random", images=str(tmp_path / "only"), n_images=25, units=5,
                         layers=("conv1_1",), realisations=1)
    with pytest.raises(NetphysError, match="at least 2 class sub-folders for the 'category' feature"):
        pd_.run_fig3(cfg, None, progress=False)

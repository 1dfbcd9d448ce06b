"""The functional-segregation experiment (``segregation.all``) end to end at CI size: caching and resuming
per piece, seeds, the result's layout and internal consistency, tables, report, figures, bad input.

One module-scoped run (2 units of the shipped 10-way VGG, 1 space, 2 restarts of 5 generations, alphas
0 / 0.5 / 1 = 5 conditions; with the shared data also one V4 session and a 60-image pool) is shared by
most tests; resuming and seeding use a still smaller ablation-only config.
"""
from __future__ import annotations

import html
import json

import matplotlib
import numpy as np
import pytest
import xarray as xr

from netphys._validation import NetphysError
from netphys.models.loading import shipped_variants
from netphys.neural import default_shared_root

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HAS_SHARED = default_shared_root() is not None
PARTS = ["ablation", "neurons", "diverse"] if HAS_SHARED else ["ablation"]

#: the main run: every part, as small as keeps each measure meaningful
#: (ensemble: EfficientNet-Lite0 rather than the HED VGG-16, which costs ~8 s per 10 images at 224 px on a
#: busy CPU; LPIPS still runs on the HED trunk, at 64 px; popsize 6 instead of the Fourier space's 27)
MAIN = {"parts": PARTS, "networks": ["netphys_vgg16:default"], "max_units": 2, "iterations": 5, "restarts": 2,
        "popsize": 6, "alphas": [0, 0.5, 1], "spaces": ["fourier"],
        "ensemble": ["netphys_vgg16:default", "efficientnet_lite0:imagenet"], "lpips": True, "detector": "proxy",
        "n_boot": 100,
        # neurons: one session, PLS only (Lasso's CV path alone takes ~1 min per session on a busy CPU)
        "sessions": ["210325"], "lasso": False,
        # diverse set: a 64-px network on a 60-image 64-px pool
        "diverse_network": "netphys_vgg16:default", "diverse_pool": "imagenette-64/val", "diverse_pool_size": 60,
        "diverse_k": 8, "diverse_components": 5, "diverse_random": 10}
#: resume / seeds: one unit, 3 restarts (3 evolve pieces, 1 measures piece), no LPIPS, no detector
SMALL = {"parts": ["ablation"], "networks": ["netphys_vgg16:default"], "max_units": 1, "iterations": 3,
         "restarts": 3, "popsize": 6, "alphas": [0, 1], "spaces": ["fourier"], "ensemble": ["netphys_vgg16:default"],
         "lpips": False, "detector": "none", "n_boot": 100}


@pytest.fixture(scope="module")
def threads():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, threads):
    from netphys.experiments.runner import run_experiment

    out = tmp_path_factory.mktemp("segregation") / "run"
    return run_experiment("segregation.all", MAIN, out=out, progress=False)


def _cache(run) -> dict:
    return json.loads(run.result.attrs["cache"])


def _computed(stats) -> dict:
    return {k: v["computed"] for k, v in stats.items()}


def _reused(stats) -> dict:
    return {k: v["reused"] for k, v in stats.items()}


def _same_values(a: xr.Dataset, b: xr.Dataset):
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    for c in a.coords:
        np.testing.assert_array_equal(a[c].values, b[c].values, err_msg=c)


# ---------------------------------------------------------------------------------------------------------
# caching, resuming, seeds

def test_every_piece_is_computed_once_and_a_second_run_recomputes_nothing(main_run):
    from netphys.experiments.runner import run_experiment

    first = _cache(main_run)
    assert first == main_run.cache
    # per (network, unit, space, restart): 1 network x 2 units x 1 space x 2 restarts; measures per unit x space
    want = {"segregation_evolve": 4, "segregation_measures": 2}
    if HAS_SHARED:
        want.update({"segregation_neuron_fit": 1, "segregation_neuron_evolve": 2, "segregation_neuron_measures": 1,
                     "segregation_diverse": 1})
    assert _computed(first) == want
    assert set(_reused(first).values()) == {0}

    again = run_experiment("segregation.all", MAIN, out=main_run.out, progress=False, report=False)
    second = _cache(again)
    assert set(_computed(second).values()) == {0}, second
    assert _reused(second) == want
    _same_values(main_run.result, again.result)


def test_an_interrupted_run_resumes_with_only_the_missing_pieces(tmp_path, threads, monkeypatch):
    from netphys.experiments import segregation as seg
    from netphys.experiments.runner import run_experiment

    out = tmp_path / "run"
    real, calls = seg.evolve_conditions, []

    def flaky(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(seg, "evolve_conditions", flaky)
        with pytest.raises(KeyboardInterrupt):
            run_experiment("segregation.all", SMALL, out=out, progress=False)
    assert len(calls) == 1
    assert not (out / "result.nc").exists() and not (out / "report.html").exists()

    resumed = run_experiment("segregation.all", SMALL, out=out, progress=False, report=False)
    stats = _cache(resumed)
    assert _computed(stats) == {"segregation_evolve": 2, "segregation_measures": 1}
    assert _reused(stats) == {"segregation_evolve": 1, "segregation_measures": 0}

    # a changed config recomputes exactly the pieces whose keys it changes: n_boot (tables only) none,
    # the detector the measures only
    assert set(_computed(_cache(run_experiment("segregation.all", {**SMALL, "n_boot": 200}, out=out,
                                               progress=False, report=False))).values()) == {0}
    stats = _cache(run_experiment("segregation.all", {**SMALL, "detector": "proxy"}, out=out, progress=False,
                                  report=False))
    assert _computed(stats) == {"segregation_evolve": 0, "segregation_measures": 1}

    # the same seed gives the same numbers: a fresh uninterrupted run (in memory) equals the resumed one
    fresh = run_experiment("segregation.all", SMALL, out=None, progress=False, report=False)
    assert set(_reused(_cache(fresh)).values()) == {0}
    for v in ("images", "activation", "activation_intact", "trace", "similarity", "similarity_baseline"):
        np.testing.assert_array_equal(fresh.result[v].values, resumed.result[v].values, err_msg=v)

    # another random_state: other images (and other scores)
    other = run_experiment("segregation.all", {**SMALL, "random_state": 1}, out=None, progress=False, report=False)
    assert not np.array_equal(other.result["images"].values, fresh.result["images"].values)
    assert not np.array_equal(other.result["activation"].values, fresh.result["activation"].values)


# ---------------------------------------------------------------------------------------------------------
# the result

def test_result_layout(main_run):
    r = main_run.result
    R = MAIN["restarts"]
    assert dict(r["images"].sizes) == {"case": 2, "space": 1, "restart": R, "condition": 5, "channel": 3,
                                       "y": 64, "x": 64}
    assert r["images"].dtype == np.uint8
    assert r["activation"].dims == ("case", "space", "restart", "condition")
    assert r["activation_intact"].dims == r["activation"].dims
    assert r["similarity"].dims == ("case", "space", "ensemble", "condition")
    assert r["similarity_baseline"].dims == ("case", "space", "ensemble")
    assert list(r["space"].values) == ["fourier"]
    assert list(r["ensemble"].values) == MAIN["ensemble"]
    assert list(r["sign"].values) == ["control", "positive", "positive", "negative", "negative"]
    np.testing.assert_array_equal(r["alpha"].values, [0, 0.5, 1, 0.5, 1])
    # 10-way network: all 10 classes, max_units 2 spaced over them (the first and the last)
    assert list(r["unit"].values) == [0, 9]
    assert list(r["network"].values) == ["netphys_vgg16:default"] * 2
    assert set(r["layer"].values) == {"fc8"}
    assert np.isnan(r["epsilon"].values).all()
    for v in ("activation", "activation_intact", "similarity", "similarity_baseline", "lpips", "objectness",
              "trace"):
        assert np.isfinite(r[v].values).all(), v
    # the ablation removed what alpha asks: share <= alpha, everything at alpha = 1, nothing for the control
    share, k = r["share"].values, r["k"].values
    assert (share <= r["alpha"].values[None, :] + 1e-9).all()
    np.testing.assert_allclose(share[:, r["alpha"].values == 1], 1.0)
    assert (k[:, 0] == 0).all() and (k[:, 1:] > 0).all()


def test_paper_conditions_are_21():
    """The default alphas (0, 0.1, ..., 1) x 2 signs give the paper's 21 conditions (control once)."""
    from netphys.experiments.segregation import SegregationConfig
    from netphys.models import load_model
    from netphys.synthesis import SignAblated

    cfg = SegregationConfig()
    assert len(cfg.alphas) == 11 and cfg.signs == ("positive", "negative")
    obj = SignAblated(load_model("netphys_vgg16", "default"), "fc8", [0], alphas=cfg.alphas, signs=cfg.signs)
    ro = obj.readouts
    assert ro.sizes["condition"] == 21
    assert list(ro["sign"].values).count("control") == 1


def test_activation_is_the_objective_of_the_stored_images(main_run):
    """``activation``: each condition's images under their own condition; ``activation_intact``: under the
    control. Recomputed from the stored uint8 images (the run scores the float images before rounding)."""
    import torch

    from netphys.models import load_model
    from netphys.synthesis import SignAblated

    r = main_run.result
    act, intact = r["activation"].values, r["activation_intact"].values
    # the control's images under the control are the same numbers twice
    np.testing.assert_array_equal(intact[..., 0], act[..., 0])
    # the stored score is the best of the evolution (its trace ends there)
    np.testing.assert_allclose(r["trace"].values[..., -1], act, rtol=1e-4, atol=1e-5)

    model = load_model("netphys_vgg16", "default")
    for c in range(r.sizes["case"]):
        obj = SignAblated(model, "fc8", [int(r["unit"].values[c])], alphas=MAIN["alphas"], signs=("positive", "negative"))
        imgs = r["images"].isel(case=c, space=0).values  # (restart, condition, 3, 64, 64)
        R, C = imgs.shape[:2]
        x = torch.from_numpy(imgs.reshape(R * C, *imgs.shape[2:]).astype(np.float32) / 255.0)
        with torch.no_grad():
            s = obj(x).double().numpy().reshape(R, C, C)  # image's restart, image's condition, scoring condition
        own = np.stack([np.diag(s[i]) for i in range(R)])
        scale = np.abs(act[c, 0]).max()
        np.testing.assert_allclose(own, act[c, 0], rtol=0.02, atol=0.02 * scale)
        np.testing.assert_allclose(s[:, :, 0], intact[c, 0], rtol=0.02, atol=0.02 * scale)


def test_similarity_and_the_control_baseline(main_run):
    r = main_run.result
    R = MAIN["restarts"]
    sim, base = r["similarity"].values, r["similarity_baseline"].values
    assert (sim >= -1 - 1e-9).all() and (sim <= 1 + 1e-9).all()
    assert (base >= -1 - 1e-9).all() and (base <= 1 + 1e-9).all()
    # control vs control over all R x R restart pairs (the diagonal is 1) vs the baseline over pairs i < j
    ctrl = sim[..., 0]
    assert (ctrl >= base - 1e-12).all()
    np.testing.assert_allclose(ctrl, 1 / R + (R - 1) / R * base, atol=1e-9)
    lp, lpb = r["lpips"].values, r["lpips_baseline"].values
    assert (lp >= 0).all() and (lpb >= 0).all()
    np.testing.assert_allclose(lp[..., 0], (R - 1) / R * lpb, atol=1e-6)
    ob = r["objectness"].values
    assert (ob >= 0).all() and (ob <= 1).all()


# ---------------------------------------------------------------------------------------------------------
# tables and report

def test_tables_written_and_consistent(main_run):
    import pandas as pd

    from netphys.interventions import sign_balance
    from netphys.models import load_model

    out, r = main_run.out, main_run.result
    names = ["summary", "table2_balance"] + (["neuron_models", "diverse_coverage"] if HAS_SHARED else [])
    for name in names:
        assert (out / f"{name}.csv").is_file(), name
    assert not (out / "table1_robustness.csv").exists()  # one network without an epsilon: no Table 1

    bal = pd.read_csv(out / "table2_balance.csv")
    np.testing.assert_allclose(bal["ratio"], bal["total_positive"] / bal["total_negative"], rtol=1e-9)
    ref = sign_balance(load_model("netphys_vgg16", "default"), "fc8", [0, 9])
    np.testing.assert_allclose(bal["total_positive"], ref["total_positive"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(bal["total_negative"], ref["total_negative"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(bal["ratio"], ref["ratio"].to_numpy(), rtol=1e-9)
    assert list(bal["unit"]) == [0, 9]

    summ = pd.read_csv(out / "summary.csv")
    assert len(summ) == 5 and list(summ["sign"]) == list(r["sign"].values)
    assert (summ["n_units"] == 2).all()
    np.testing.assert_allclose(summ["activation"], r["activation"].mean(("restart", "space")).mean("case").values,
                               rtol=1e-6)
    np.testing.assert_allclose(summ["change"], summ["baseline"] - summ["similarity"], atol=1e-9)
    for m in ("activation", "similarity", "baseline"):
        assert (summ[f"{m}_low"] <= summ[m] + 1e-9).all() and (summ[m] <= summ[f"{m}_high"] + 1e-9).all(), m
    if HAS_SHARED:
        nm = pd.read_csv(out / "neuron_models.csv", dtype=str)  # one flat header row
        assert len(nm) == 1 and nm.loc[0, "session"] == "210325"
        assert nm["pls_r2_count"].tolist() == ["50"]  # the session's 50 V4 units
        assert {"pls_r2_median", "balance_median"} <= set(nm.columns)
        cov = pd.read_csv(out / "diverse_coverage.csv")
        assert {"metric", "selected", "random_mean", "random_std", "percentile"} <= set(cov.columns)
        assert r.sizes["diverse_cluster"] == MAIN["diverse_k"]


def test_report_contains_every_figure(main_run):
    from netphys.experiments.segregation import Segregation

    text = main_run.report.read_text()
    specs = Segregation().figure_specs(main_run.result)
    stems = [s for s, _, _ in specs]
    assert {"fig1_activation", "fig4_similarity", "fig5_objectness", "grid_netphys_vgg16_default_fourier"} <= set(stems)
    if HAS_SHARED:
        assert {"neuron_models", "fig10_neuron_ablation", "grid_neuron_models_fourier", "fig12_diverse_set"} <= set(stems)
    assert "fig7_robustness" not in stems
    assert text.count('<img src="data:image/png;base64,') >= len(specs)
    for stem, _, caption in specs:
        assert f"<figcaption>{html.escape(caption)}</figcaption>" in text, stem
        for suffix in ("", "_single"):
            assert (main_run.out / f"{stem}{suffix}.png").is_file(), stem + suffix


def _check_figures(specs):
    from netphys.plotting.style import (
        MIN_FONT_PT,
        WIDTHS,
        clipped_texts,
        covered_data,
        overlapping_labels,
        text_sizes,
    )

    for layout in ("double", "single"):
        for stem, make, _ in specs:
            fig = make(layout)
            try:
                where = (stem, layout)
                assert fig.get_size_inches()[0] == pytest.approx(WIDTHS[layout]), where
                assert fig.get_size_inches()[1] <= 9.0, where
                sizes = text_sizes(fig)
                assert sizes and min(s for _, s in sizes) >= MIN_FONT_PT, where
                assert covered_data(fig) == [], where
                assert clipped_texts(fig) == [], where
                assert overlapping_labels(fig) == [], where
            finally:
                plt.close(fig)


def test_figures_are_legible_in_both_layouts(main_run):
    from netphys.experiments.segregation import Segregation

    _check_figures(Segregation().figure_specs(main_run.result))


def _ladder(result: xr.Dataset) -> xr.Dataset:
    """The run's output units as if from three networks of a robustness ladder (epsilon 0, 2, 8 / 255),
    the more robust the less similar their ablated images."""
    abl = result[[v for v in result.data_vars if "case" in result[v].dims]]
    n = abl.sizes["case"]
    parts = []
    for i, e in enumerate((0, 2, 8)):
        p = abl.assign_coords(network=("case", [f"netphys_vgg16:pgd{e}"] * n), epsilon=("case", [e / 255] * n))
        p["similarity"] = p["similarity"] - 0.5 * i * (p["sign"] == "positive")
        parts.append(p)
    out = xr.concat(parts, dim="case")
    return out.assign_coords(case=np.arange(out.sizes["case"]))


def test_table1_and_fig7_from_a_ladder(main_run):
    """Table 1 and Fig. 7 appear with >= 3 networks of known epsilon (here the run's units relabelled)."""
    from netphys.experiments.segregation import Segregation, segregation_tables

    lad = _ladder(main_run.result)
    t1 = segregation_tables(lad)["table1_robustness"]
    # rows (sign, measure), columns the alphas > 0
    assert len(t1) == 4 and set(t1["sign"]) == {"positive", "negative"} and set(t1["measure"]) == {"rho", "pvalue"}
    rho = t1.set_index(["sign", "measure"]).loc[("positive", "rho")]
    assert len(rho) == 2 and (rho.to_numpy(float) > 0.8).all()  # the change grows with epsilon
    specs = [s for s in Segregation().figure_specs(lad) if s[0] == "fig7_robustness"]
    assert len(specs) == 1
    _check_figures(specs)


def test_table1_from_a_run_over_a_ladder_of_variants(tmp_path, threads, monkeypatch):
    """End to end: three ``netphys_vgg16:pgdE`` variants (here the default weights under manifests with
    epsilon 0, 2, 8 / 255) give a Table 1 CSV and Fig. 7; the epsilons come from the manifests."""
    import pandas as pd

    from netphys.experiments.runner import run_experiment
    from netphys.experiments.segregation import Segregation
    from netphys.models import loading

    manifest = json.loads((loading.default_model_dir() / "manifest.json").read_text())
    for e in (0, 2, 8):
        d = tmp_path / "variants" / f"pgd{e}"
        d.mkdir(parents=True)
        (d / manifest["weights_file"]).symlink_to(loading.default_model_dir() / manifest["weights_file"])
        (d / "manifest.json").write_text(json.dumps({**manifest, "epsilon": e / 255}))
    monkeypatch.setattr(loading, "variants_dir", lambda: tmp_path / "variants")
    nets = ["netphys_vgg16:pgd0", "netphys_vgg16:pgd2", "netphys_vgg16:pgd8"]
    run = run_experiment("segregation.all", {**SMALL, "networks": nets, "restarts": 2}, out=tmp_path / "run",
                         progress=False, report=False)
    np.testing.assert_allclose(run.result["epsilon"].values, [0, 2 / 255, 8 / 255])
    t1 = pd.read_csv(tmp_path / "run" / "table1_robustness.csv")
    assert list(t1.columns) == ["sign", "measure", "1.0"] and len(t1) == 4
    assert "fig7_robustness" in [s for s, _, _ in Segregation().figure_specs(run.result)]


def test_table1_with_the_shipped_ladder(tmp_path, threads):
    from netphys.experiments.runner import run_experiment

    ladder = [f"netphys_vgg16:{v}" for v in shipped_variants() if v.startswith("pgd")][:3]
    assert len(ladder) == 3  # the package ships pgd0 ... pgd8
    run = run_experiment("segregation.all", {**SMALL, "networks": ladder, "restarts": 2}, out=tmp_path / "run",
                         progress=False, report=False)
    assert np.isfinite(run.result["epsilon"].values).all()
    assert (tmp_path / "run" / "table1_robustness.csv").is_file()


# ---------------------------------------------------------------------------------------------------------
# bad input: clear errors naming the parameter, nothing written

@pytest.mark.parametrize("over, param", [
    ({"alphas": [0, 1.5]}, "alphas"),
    ({"alphas": [0.5, 1]}, "alphas"),  # no control
    ({"alphas": [0, -0.1]}, "alphas"),
    ({"spaces": ["bogus"]}, "spaces"),
    ({"detector": "yolo"}, "detector"),
    ({"signs": ["both"]}, "signs"),
    ({"units": [-1]}, "units"),
    ({"popsize": 1}, "popsize"),
])
def test_bad_config_is_refused_before_the_run(tmp_path, over, param):
    from netphys.experiments.runner import run_experiment

    out = tmp_path / "run"
    with pytest.raises(NetphysError, match=f"'{param}' parameter"):
        run_experiment("segregation.all", {**SMALL, **over}, out=out, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("over, param", [
    ({"output_layer": "pool5"}, "output_layer"),  # no weights
    ({"output_layer": "conv5_3"}, "output_layer"),  # weights, but not the output units
    ({"output_layer": "no_such_layer"}, "output_layer"),
    ({"networks": ["no_such_net:default"]}, "name"),
    ({"networks": ["netphys_vgg16:no_such_weights"]}, "weights"),
    ({"networks": ["efficientnet_lite0:imagenet"], "units": [5000]}, "units"),
])
def test_bad_network_settings_fail_before_any_result(tmp_path, threads, over, param):
    from netphys.experiments.runner import run_experiment

    out = tmp_path / "run"
    with pytest.raises(NetphysError, match=f"'{param}' parameter"):
        run_experiment("segregation.all", {**SMALL, **over}, out=out, progress=False)
    assert not (out / "result.nc").exists() and not (out / "report.html").exists()
    assert not list(out.glob("*.csv")) and not list(out.glob("*.png"))


def test_unit_out_of_range_in_the_library():
    from netphys.interventions import sign_ablation
    from netphys.models import load_model

    model = load_model("netphys_vgg16", "default")
    with pytest.raises(NetphysError, match="'unit' parameter.*10 output units"), \
            sign_ablation(model, "fc8", 10, "positive", 0.5):
        pass
    with pytest.raises(NetphysError, match="'alpha' parameter"), sign_ablation(model, "fc8", 0, "positive", 1.5):
        pass
    with pytest.raises(NetphysError, match="'layer' parameter"), sign_ablation(model, "pool5", 0):
        pass


def test_detector_returning_the_wrong_shape():
    import torch

    from netphys.stats.similarity import objectness

    class TwoPerImage:
        name, is_proxy = "two-per-image", True

        def __call__(self, images):
            return torch.full((images.shape[0], 2), 0.5)

    with pytest.raises(NetphysError, match="'detector' parameter.*shape"):
        objectness(torch.rand(3, 3, 16, 16), TwoPerImage())


def test_nan_neural_responses():
    from netphys.experiments.segregation import SegregationConfig, fit_neuron_models
    from netphys.models import load_model

    Y = xr.DataArray(np.ones((8, 3)), dims=("stimulus", "unit"))
    Y[2, 1] = np.nan
    images = np.zeros((8, 64, 64, 3), np.uint8)
    with pytest.raises(NetphysError, match="'responses' parameter"):
        fit_neuron_models(load_model("netphys_vgg16", "default"), "fc8", images, Y, SegregationConfig(), random_state=0)

"""Orientation-selectivity rig: gratings -> gOSI of channels, training with gOSI per epoch, the sweep
(serial and process back-ends), ablation, shift invariance, V1 with the same estimator, report, CLI.
Training is kept tiny: 32-px random images, 3 classes, 1 epoch."""
import dataclasses
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
import yaml  # noqa: E402

from conftest import SHARED_DATA, no_hooks_left  # noqa: E402
from netphys._validation import NetphysError  # noqa: E402
from netphys.experiments import orientation as ori  # noqa: E402
from netphys.experiments.config import load_config  # noqa: E402
from netphys.experiments.orientation import OrientationConfig  # noqa: E402
from netphys.experiments.runner import run_experiment  # noqa: E402
from netphys.models.cifar import reference_cnn  # noqa: E402
from netphys.neural.v1 import v1_gosi  # noqa: E402
from netphys.recording.gratings import grating_responses  # noqa: E402
from netphys.stats.selectivity import channel_gosi, gosi_by_layer  # noqa: E402
from netphys.stimuli.gratings import gratings  # noqa: E402

V1_ROOT = SHARED_DATA / "ecker-v1-gratings"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("orient") / "imgs"
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 4)):
        for c in ("a", "b", "c"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def tiny(folder, **kw):
    base = dict(data=str(folder), max_train=None, max_test=None, epochs=1, sweep_epochs=1,
                sweep_augmentations=("none",), corruption_rates=(1.0,), backend="serial",
                invariance_units=8, ablation_random=2, spearman_epochs=3, eval_batch_size=64,
                layers=("conv1", "conv2", "conv3", "fc7"))
    base.update(kw)
    return OrientationConfig.fast(**base)


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("orient_out")
    cfg = tiny(folder)
    result = ori.run_orientation(cfg, out, progress=False, report=True)
    return cfg, ori.frames(result), out, result


def _no_time(df):
    return df.drop(columns=["seconds"])


def _counts(run_):
    return {k: (v["computed"], v["reused"]) for k, v in run_.cache.items()}


# ----------------------------------------------------------------------------- config
def test_fast_config_and_paper_defaults():
    paper = OrientationConfig()
    assert (paper.epochs, paper.batch_size, paper.lr, paper.dynamics_lr) == (200, 32, 1e-3, 1e-4)
    assert paper.sweep_seeds == 50 and len(paper.sweep_augmentations) == 4
    assert paper.corruption_rates == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert paper.layers == ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc7")
    fast = OrientationConfig.fast()
    assert fast.in_size == 32 and fast.epochs < paper.epochs and fast.dynamics_lr is None
    assert OrientationConfig.fast(epochs=3).epochs == 3
    fast.validate()


@pytest.mark.parametrize("kw, match", [
    ({"augmentation": "rotate"}, r"the 'augmentation' parameter of OrientationConfig must be one of 'none', "
                                 r"'shift', 'flip', 'shift\+flip', got 'rotate'"),
    ({"in_size": 16}, r"the 'in_size' parameter of OrientationConfig must be an int >= 29, got 16"),
    ({"parts": ("everything",)}, r"the 'parts' parameter of OrientationConfig must be one of"),
    ({"invariance_ablate": ("conv9",)}, r"the 'invariance_ablate' parameter .* layers among"),
    ({"backend": "mpi"}, r"the 'backend' parameter of OrientationConfig must be one of"),
])
def test_config_errors(kw, match):
    with pytest.raises(NetphysError, match=match):
        OrientationConfig(**kw).validate()


def test_fast_cli_config_file_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"epochs": 2, "in_size": 64, "layers": ["conv1", "conv2"]}))
    with pytest.raises(NetphysError, match=r"the 'invariance_ablate' parameter .* got 'conv3'"):
        load_config(ori.FastOrientationConfig, str(f))   # validated before any work
    f.write_text(yaml.safe_dump({"epochs": 2, "in_size": 64, "layers": ["conv1", "conv2"],
                                 "invariance_ablate": ["conv2"]}))
    cfg = load_config(ori.FastOrientationConfig, str(f))
    assert (cfg.epochs, cfg.in_size, cfg.layers, cfg.max_train) == (2, 64, ("conv1", "conv2"), 7500)
    f.write_text(yaml.safe_dump({"epoch": 2}))
    with pytest.raises(NetphysError, match=r"unknown key\(s\) \['epoch'\]"):
        load_config(ori.FastOrientationConfig, str(f))


def test_registered_experiments_and_their_configs():
    from netphys.experiments import experiment_names, get_experiment

    names = {"orientation.all", "orientation.fast", "orientation.selectivity", "orientation.dynamics",
             "orientation.sweep", "orientation.ablation", "orientation.default"}
    assert names <= set(experiment_names())
    # the fast experiment's defaults are OrientationConfig.fast()
    fast = get_experiment("orientation.fast").Config()
    assert dataclasses.asdict(fast) == dataclasses.asdict(OrientationConfig.fast())
    assert get_experiment("orientation.all").Config is OrientationConfig
    fixed = {"orientation.selectivity": ("selectivity", "v1"), "orientation.dynamics": ("selectivity", "dynamics"),
             "orientation.sweep": ("sweep",), "orientation.ablation": ("selectivity", "ablation", "invariance")}
    for name, parts in fixed.items():
        cfg = get_experiment(name).Config()
        assert cfg.parts == parts and cfg.epochs == 200  # paper scale, sections fixed
        assert isinstance(cfg, OrientationConfig)
    with pytest.raises(NetphysError, match=r"the 'parts' parameter of SweepConfig must be \['sweep'\]"):
        load_config(get_experiment("orientation.sweep").Config, {"parts": ["sweep", "v1"]})
    assert get_experiment("orientation.default").Config is ori.DefaultModelConfig


def test_weights_stored_as_a_piece_keep_names_dtypes_and_values(tmp_path):
    from netphys.experiments.cache import PieceCache, split_state, state_dataset

    model = reference_cnn(num_classes=3, in_size=32, random_state=1)
    state = dict(model.state_dict())
    state["counter"] = torch.tensor(7)                        # a 0-d int buffer
    state["half"] = torch.arange(4, dtype=torch.bfloat16)     # a dtype NumPy lacks
    hist = xr.Dataset({"val_loss": ("epoch", [2.0, 1.5])}, coords={"epoch": [0, 1]}, attrs={"best_epoch": 1})
    cache = PieceCache(tmp_path)
    cache.put("net", "ab" * 32, "doc", state_dataset(state, hist))
    got, rest = split_state(PieceCache(tmp_path).get("net", "ab" * 32, "doc"))   # read back from disk
    assert list(got) == list(state)
    for k, v in state.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), k
    xr.testing.assert_identical(rest, hist)
    fresh = reference_cnn(num_classes=3, in_size=32, random_state=2)
    fresh.load_state_dict({k: v for k, v in got.items() if k not in ("counter", "half")})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------- building blocks
def test_grating_responses_centre_and_mean():
    model = reference_cnn(num_classes=3, in_size=32, random_state=0)
    grats = gratings(32)
    centre = grating_responses(model, grats, ["conv1", "conv6", "fc7"])
    mean = grating_responses(model, grats, ["conv1", "conv6", "fc7"], response="mean")
    assert centre.shape == mean.shape == (432, 32 + 128 + 512)
    c1 = centre["layer"].values == "conv1"
    assert set(centre["row"].values[c1]) == {15} and set(mean["row"].values) == {-1}
    assert (centre.values >= 0).all()  # post-ReLU
    # conv6 is 1x1 at 32 px and FC units are single: centre == mean there
    rest = ~c1
    np.testing.assert_allclose(centre.values[:, rest], mean.values[:, rest], rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # a channel's "mean" response: the spatial mean of its post-ReLU map
        maps = model.features[:3](grats.tensor(np.arange(5)))
    np.testing.assert_allclose(mean.values[:5, c1], maps.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    g = channel_gosi(centre)
    assert ((g["gosi"] >= 0) & (g["gosi"] <= 1)).all()
    table = gosi_by_layer(g)
    assert list(table.index) == ["conv1", "conv6", "fc7"] and (table["n_units"] == [32, 128, 512]).all()
    assert no_hooks_left(model)


# ----------------------------------------------------------------------------- end to end
def test_result_is_one_labelled_dataset(run):
    cfg, res, out, result = run
    layers = list(cfg.layers)
    assert list(result["layer"].values) == layers
    dims = {"gosi": ("unit",), "gosi_shuffled": ("shuffle", "unit"), "tuning": ("unit", "orientation", "phase", "sf"),
            "history_val_loss": ("epoch",), "history_gosi": ("epoch", "layer"), "layer_mean_gosi": ("layer",),
            "dynamics_spearman_rho": ("layer",), "sweep_test_loss": ("network",), "sweep_gosi": ("network", "layer"),
            "sweep_spearman_rho_all": ("layer",), "ablation_d_top": ("layer",), "invariance_mean": ("invariance_row",),
            "invariance_test_cv_ablated": ("invariance_test",)}
    for v, d in dims.items():
        assert result[v].dims == d, v
    assert result["unit_layer"].dims == ("unit",) and set(result["unit_layer"].values) == set(layers)
    assert list(result["network"].values) == ["none_p0_s0", "none_p1_s0"]
    # the per-epoch history is the per-layer mean of the channels' gOSI of the analysed epoch
    best = int(result.attrs["best_epoch"])
    for l in layers:
        mean = float(result["gosi"].values[result["unit_layer"].values == l].mean())
        assert float(result["history_gosi"].sel(epoch=best, layer=l)) == pytest.approx(mean, abs=1e-9)
        assert float(result["layer_mean_gosi"].sel(layer=l)) == pytest.approx(mean, abs=1e-12)
    # the runner saved it as netCDF; the tables come back from the file
    from netphys.io import load_dataset

    saved = load_dataset(out / "orientation.nc")
    back = ori.frames(saved)
    pd.testing.assert_frame_equal(back["sweep"], res["sweep"])
    pd.testing.assert_frame_equal(back["ablation"], res["ablation"])
    np.testing.assert_array_equal(back["gosi"]["gosi"].values, res["gosi"]["gosi"].values)


def test_run_selectivity_and_dynamics(run):
    cfg, res, _, _ = run
    g = res["gosi"]
    assert g.sizes["unit"] == 32 + 32 + 64 + 512
    assert float(g["gosi"].min()) >= 0 and float(g["gosi"].max()) <= 1
    assert res["shuffled"].sizes["shuffle"] == 1
    hist = res["history"]
    assert list(hist.index) == [0, 1] and np.isnan(hist.loc[0, "train_loss"])
    assert {f"gosi_{l}" for l in cfg.layers} <= set(hist.columns)
    dyn = res["dynamics"]
    assert dyn["note"].startswith("the main network") and list(dyn["spearman"].index) == list(cfg.layers)
    assert res["n_images"] == {"train": 24, "val": 6, "test": 12}
    assert 0 <= res["test"]["accuracy"] <= 1


def test_run_sweep_ablation_invariance(run):
    cfg, res, _, _ = run
    sweep = res["sweep"]
    assert list(sweep.index) == ["none_p0_s0", "none_p1_s0"]
    assert {"test_loss", "train_loss", "gosi_conv1", "selective_fc7"} <= set(sweep.columns)
    assert list(res["sweep_rho"].index) == list(cfg.layers)
    abl = res["ablation"]
    assert list(abl.index) == list(cfg.layers)
    assert (abl["n_ablated"] == abl["n_channels"] // 2).all()
    assert (abl["gosi_top"] >= abl["gosi_bottom"]).all()
    expected = (abl["d_top"] > 0) & (abl["d_top"] > 2 * abl["d_bottom"])
    assert (abl["marked"] == expected).all()
    inv = res["invariance"]
    assert set(inv["network"]) == {"intact", "conv2 top-gOSI ablated", "conv3 top-gOSI ablated",
                                   "conv2 bottom-gOSI ablated", "conv3 bottom-gOSI ablated"}
    assert set(inv["direction"]) == {"horizontal", "vertical", "both", "all"}
    tests = res["invariance_tests"]
    assert set(tests["layer"]) == set(cfg.layers) and set(tests["group"]) == {"top", "bottom"}
    # layers below the ablated one are untouched
    below = tests[(tests["ablated_layer"] == "conv3") & tests["layer"].isin(["conv1", "conv2"])]
    np.testing.assert_allclose(below["cv_ablated"], below["cv_intact"])


@pytest.mark.skipif(not V1_ROOT.is_dir(), reason="../shared/data/ecker-v1-gratings is absent")
def test_v1_same_estimator(run):
    _, res, _, _ = run
    static, drifting = res["v1"]["V1 static"], res["v1"]["V1 drifting"]
    assert static.attrs["n_sessions"] == 17 and len(static.attrs["sessions_skipped"]) == 4
    assert drifting.attrs["n_sessions"] == 27 and drifting.attrs["sessions_skipped"] == []
    for d in (static, drifting):
        assert 0 < d.sizes["unit"] <= d.attrs["n_units_clean"] <= d.attrs["n_units_total"]
        assert float(d["gosi"].min()) >= 0 and float(d["gosi"].max()) <= 1
        assert (d["peak_rate_hz"] >= 1.0).all()


@pytest.mark.skipif(not V1_ROOT.is_dir(), reason="../shared/data/ecker-v1-gratings is absent")
def test_v1_gosi_by_hand():
    """One drifting-grating unit recomputed from the raw .mat with the textbook formula."""
    import scipy.io as sio

    s = sio.loadmat(V1_ROOT / "data_v1_binned_moving.mat", squeeze_me=True, struct_as_record=False)["data"][0]
    ds = v1_gosi(V1_ROOT, "drifting", min_rate_hz=0.0, max_contamination=1.0)
    win = (s.times >= 50) & (s.times < 550)
    counts = s.spikes[0][:, win, :].astype(float).sum(axis=1)  # unit 0: 16 directions x repeats
    counts[s.spikes.sum(axis=(0, 2)) == 0] = np.nan  # trials in which no unit fired: padding
    rate = np.nanmean(counts, axis=1) / 0.5
    dirs = np.array([float(c.direction) for c in s.conditions])
    ori_deg = np.mod(dirs, 180)
    r = np.array([rate[ori_deg == o].max() for o in np.unique(ori_deg)])
    theta = np.deg2rad(np.unique(ori_deg))
    expected = np.abs(np.sum(r * np.exp(2j * theta))) / r.sum()
    assert float(ds["gosi"].values[0]) == pytest.approx(expected, rel=1e-9)


def test_report_and_cache(run, folder):
    cfg, res, out, _ = run
    html = (out / "report.html").read_text()
    assert "Findings" in html and "Spearman" in html and "Ablation" in html
    for stem in ("gosi_histograms", "tuning_curves", "dynamics", "sweep", "ablation", "invariance"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}_single.png").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert set(prov["summary"]["gosi_by_layer"]) == set(cfg.layers)
    assert prov["cache"]["main_network"] == {"computed": 1, "reused": 0}
    assert pd.read_csv(out / "ablation.csv").shape[0] == len(cfg.layers)
    assert list(pd.read_csv(out / "gosi_by_layer.csv")["layer"]) == list(cfg.layers)
    assert len(pd.read_csv(out / "sweep.csv")) == 2 and (out / "history.csv").is_file()
    # a rerun with the same settings re-uses the split, the trained network and the sweep
    again = run_experiment("orientation.all", tiny(folder, parts=("selectivity", "sweep")), out, progress=False,
                           report=False)
    assert _counts(again) == {"splits": (0, 1), "main_network": (0, 1), "sweep_network": (0, 2)}
    fr = ori.frames(again.result)
    np.testing.assert_array_equal(fr["gosi"]["gosi"].values, res["gosi"]["gosi"].values)
    pd.testing.assert_frame_equal(fr["sweep"], res["sweep"])
    pd.testing.assert_frame_equal(fr["history"], res["history"])


def test_changed_config_recomputes_exactly_what_it_changes(folder, tmp_path):
    """Analysis-only fields reuse the trained network; training fields retrain it; data fields re-split."""
    first = run_experiment("orientation.all", tiny(folder, parts=("selectivity",)), tmp_path, progress=False,
                           report=False)
    assert _counts(first) == {"splits": (1, 0), "main_network": (1, 0)}
    g0 = first.result["gosi"].values
    # more shuffles, an extra analysis section, another Spearman window: no retraining
    more = run_experiment("orientation.all", tiny(folder, parts=("selectivity", "ablation"), n_shuffles=2,
                                                  ablation_random=1, spearman_epochs=4), tmp_path,
                          progress=False, report=False)
    assert _counts(more) == {"splits": (0, 1), "main_network": (0, 1)}
    np.testing.assert_array_equal(more.result["gosi"].values, g0)
    assert more.result.sizes["shuffle"] == 2
    # a training field retrains the network, on the same split
    longer = run_experiment("orientation.all", tiny(folder, parts=("selectivity",), epochs=2), tmp_path,
                            progress=False, report=False)
    assert _counts(longer) == {"splits": (0, 1), "main_network": (1, 0)}
    assert list(longer.result["epoch"].values) == [0, 1, 2]
    # a data field makes a new split and so a new network
    resplit = run_experiment("orientation.all", tiny(folder, parts=("selectivity",), val_fraction=0.3), tmp_path,
                             progress=False, report=False)
    assert _counts(resplit) == {"splits": (1, 0), "main_network": (1, 0)}
    assert resplit.result.attrs["n_val"] == 9
    # the first config again: everything from the cache, the same numbers
    back = run_experiment("orientation.all", tiny(folder, parts=("selectivity",)), tmp_path, progress=False,
                          report=False)
    assert _counts(back) == {"splits": (0, 1), "main_network": (0, 1)}
    np.testing.assert_array_equal(back.result["gosi"].values, g0)


def test_sweep_networks_are_pieces_of_their_own(run, folder, tmp_path):
    """Adding a corruption rate trains only that network; the main network's epochs do not retrain
    the sweep (whose own epochs are set)."""
    _, res, _, _ = run
    first = run_experiment("orientation.all", tiny(folder, parts=("sweep",)), tmp_path, progress=False, report=False)
    assert _counts(first) == {"splits": (1, 0), "sweep_network": (2, 0)}
    pd.testing.assert_frame_equal(_no_time(ori.frames(first.result)["sweep"]), _no_time(res["sweep"]))
    more = run_experiment("orientation.all", tiny(folder, parts=("sweep",), corruption_rates=(1.0, 0.5), epochs=3),
                          tmp_path, progress=False, report=False)
    assert _counts(more) == {"splits": (0, 1), "sweep_network": (1, 2)}
    sw = ori.frames(more.result)["sweep"]
    assert list(sw.index) == ["none_p0_s0", "none_p1_s0", "none_p0.5_s0"]
    pd.testing.assert_frame_equal(_no_time(sw.loc[res["sweep"].index]), _no_time(res["sweep"]))
    longer = run_experiment("orientation.all", tiny(folder, parts=("sweep",), sweep_epochs=2), tmp_path,
                            progress=False, report=False)
    assert _counts(longer) == {"splits": (0, 1), "sweep_network": (2, 0)}


def test_damaged_weights_piece_is_reported_and_retrained(folder, tmp_path):
    from netphys.experiments.cache import read_piece_file

    cfg = tiny(folder, parts=("selectivity",))
    first = run_experiment("orientation.all", cfg, tmp_path, progress=False, report=False)
    weights = [p for p in (tmp_path / "cache").rglob("*.npz") if "state_names" in read_piece_file(p).attrs]
    assert len(weights) == 1
    weights[0].write_bytes(weights[0].read_bytes()[:1000])   # an interrupted copy
    with pytest.warns(UserWarning, match="damaged cache piece main_network"):
        again = run_experiment("orientation.all", cfg, tmp_path, progress=False, report=False)
    assert _counts(again) == {"splits": (0, 1), "main_network": (1, 0)}
    np.testing.assert_array_equal(again.result["gosi"].values, first.result["gosi"].values)


def test_sweep_in_worker_processes(run, folder, tmp_path):
    """The same networks trained by 2 worker processes (the config's own backend) give the serial results."""
    _, res, _, _ = run
    par = ori.frames(ori.run_orientation(tiny(folder, parts=("sweep",), backend="process", max_workers=2), tmp_path,
                                         progress=False))
    assert par["sweep_backend"] == "process"
    np.testing.assert_allclose(par["sweep"]["test_loss"], res["sweep"]["test_loss"], rtol=1e-3)
    np.testing.assert_allclose(par["sweep"]["gosi_conv2"], res["sweep"]["gosi_conv2"], atol=1e-3)


def test_sweep_on_ray_identical_to_serial(run, folder, tmp_path):
    """The runner's executor (a local Ray instance) trains the sweep's networks: the serial numbers exactly."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'netphys[ray]')")
    _, res, _, _ = run
    ray = run_experiment("orientation.sweep", tiny(folder, parts=("sweep",)), tmp_path, progress=False,
                         report=False, backend="ray", max_workers=2)
    fr = ori.frames(ray.result)
    assert fr["sweep_backend"] == "ray" and _counts(ray)["sweep_network"] == (2, 0)
    pd.testing.assert_frame_equal(_no_time(fr["sweep"]), _no_time(res["sweep"]), check_exact=True)


def test_cli_runs_fast_experiment(run, folder, capsys):
    from netphys.cli import main

    _, _, out, _ = run
    f = out / "cli.yaml"
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in
         {"data": str(folder), "max_train": None, "max_test": None, "epochs": 1, "spearman_epochs": 3,
          "parts": ["selectivity"], "eval_batch_size": 64, "layers": ["conv1", "conv2", "conv3", "fc7"]}.items()}
    f.write_text(yaml.safe_dump(d))
    assert main(["run", "orientation.fast", "--config", str(f), "--out", str(out), "--no-progress"]) == 0
    assert "report:" in capsys.readouterr().out and (out / "report.html").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["experiment"] == "orientation.fast" and prov["config"]["parts"] == ["selectivity"]
    assert prov["cache"]["main_network"] == {"computed": 0, "reused": 1}  # the fixture's network


def test_default_model_experiment(tmp_path):
    cfg = ori.DefaultModelConfig(weights="random", layers=("conv1_1", "conv2_1"), n_images=20,
                                 ablation_random=0, invariance_units=4, invariance_ablate=("conv1_1",), v1=False)
    path = ori.run_default_model(cfg, tmp_path, progress=False)
    assert path.is_file() and (tmp_path / "gosi_histograms.png").is_file()
    abl = pd.read_csv(tmp_path / "ablation.csv", index_col=0)
    assert list(abl.index) == ["conv1_1", "conv2_1"]
    from netphys.io import load_dataset

    result = load_dataset(tmp_path / "orientation.nc")
    assert list(result["layer"].values) == ["conv1_1", "conv2_1"] and result["gosi"].dims == ("unit",)
    assert result["ablation_d_top"].dims == ("layer",)

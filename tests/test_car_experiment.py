"""car.* experiments: a CI-sized run (report, tables, figures), resumable CAR paths (GreedyPruner.fit(removed=)),
reuse of every cached piece, bad configs refused before anything is written."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from netphys._validation import NetphysError
from netphys.experiments import run_experiment
from netphys.experiments.car import CARPruning, stop_step
from netphys.interventions import GreedyPruner

pytestmark = pytest.mark.usefixtures("one_thread")

#: one layer of the shipped VGG, 60 images (30 + 30), the curve to 80 % of the 128 filters (25 steps in
#: CAR chunks of 10), 2 random orders, 3 fine-tuning iterations
TINY = {"layers": ["conv5_3"], "n_images": 60, "curve_keep_ratio": 0.8, "random_repeats": 2, "checkpoint_every": 10,
        "finetune_iterations": 3, "finetune_images": 40, "finetune_points": 2, "finetune_batch_size": 8,
        "batch_size": 256, "threads": 1}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data_module):
    out = tmp_path_factory.mktemp("car") / "run"
    shorter = run_experiment("car.all", {**TINY, "curve_keep_ratio": 0.85}, out, progress=False, report=False)
    first = run_experiment("car.all", TINY, out, progress=False)
    again = run_experiment("car.all", TINY, out, progress=False)
    return shorter, first, again


@pytest.fixture(scope="module")
def shared_data_module():
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "imagenette-64").is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


# ----------------------------------------------------------------------------- the run
def test_report_tables_and_result_layout(runs):
    _, run, _ = runs
    res, out = run.result, run.out
    html = (out / "report.html").read_text()
    assert "CAR filter pruning" in html and "Table 2.1" in html
    for name in ("compression", "carc_lists", "accuracy_curves"):
        assert (out / f"{name}.csv").is_file()
    for stem in ("accuracy_vs_filters_kept", "compression_ratio", "carc_conv5_3"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}_single.png").is_file()
    assert list(res["method"].values) == ["car", "incoming", "outgoing", "random"]
    assert res.sizes["repeat"] == 2 and res.sizes["step"] == 128 - 103 + 1
    assert res["n_kept"].values[0].tolist() == list(range(128, 102, -1))
    # every path starts at the intact network and removes distinct filters
    acc0 = res["selection_accuracy"].values[0, :, :, 0]
    assert np.allclose(acc0[np.isfinite(acc0)], acc0[0, 0])
    car = res["removed"].sel({"method": "car"}).values[0, 0]
    assert car[0] == -1 and len(set(car[1:])) == 25
    r = res["removed"].sel({"method": "random"}).values[0]
    assert not np.array_equal(r[0], r[1])  # two seeded orders
    assert not np.isfinite(res["test_accuracy"].sel({"method": "car"}).values[0, 1]).any()  # one repeat only
    # the stop read off the path, the ratio and the FLOPs of Table 2.1
    tables = CARPruning().tables(res)
    comp = tables["compression"]
    assert set(comp["method"]) == {"original", "car", "incoming", "outgoing", "random", "car + fine-tuning"}
    for mi, m in enumerate(res["method"].values):
        step, cens = stop_step(res["selection_accuracy"].values[0, mi, 0], 0.05)
        assert res["stop_step"].values[0, mi, 0] == step and res["censored"].values[0, mi, 0] == cens
        assert res["compression_ratio"].values[0, mi, 0] == pytest.approx(128 / (128 - step))
    orig = comp[comp["method"] == "original"].iloc[0]
    assert orig["flops_M"] == pytest.approx(4 * 4 * 128 * 9 * 128 / 1e6)  # k^2 n_L f^2 n_{L-1}
    car_row = comp[comp["method"] == "car"].iloc[0]
    assert car_row["flops_M"] == pytest.approx(orig["flops_M"] * car_row["filters"] / 128)
    carc = tables["carc_lists"]
    assert len(carc) == 5 and carc["rank"].tolist() == [1, 2, 3, 4, 5]
    assert (np.diff(carc["car"].values) <= 0).all()
    ft = res["ft_n_kept"].values[0]
    assert (ft[ft >= 0] < 128).all() and np.isfinite(res["ft_test_accuracy"].values[0][ft >= 0]).all()


def test_rerun_recomputes_nothing_and_a_longer_curve_reuses_the_earlier_chunks(runs):
    shorter, first, again = runs
    stats = json.loads(again.result.attrs["cache"])
    assert stats and all(v["computed"] == 0 and v["reused"] > 0 for v in stats.values()), stats
    for v in first.result.data_vars:
        np.testing.assert_array_equal(first.result[v].values, again.result[v].values)
    # 0.85 -> 0.8 of the filters: the CAR chunk 128 -> 118 is reused, 118 -> 108 and 108 -> 103 are new
    grown = json.loads(first.result.attrs["cache"])
    assert grown["car_steps"] == {"computed": 2, "reused": 1}
    k = shorter.result.sizes["step"]
    np.testing.assert_array_equal(shorter.result["removed"].sel({"method": "car"}).values[..., :k],
                                  first.result["removed"].sel({"method": "car"}).values[..., :k])


def test_chunked_car_path_equals_one_uninterrupted_run(runs):
    _, run, _ = runs
    whole = run_experiment("car.all", {**TINY, "checkpoint_every": 1000, "methods": ["car"], "finetune": False},
                           None, progress=False, report=False).result
    a, b = run.result.sel({"method": "car"}).isel(repeat=0), whole.sel({"method": "car"}).isel(repeat=0)
    np.testing.assert_array_equal(a["removed"].values, b["removed"].values)
    for v in ("selection_accuracy", "test_accuracy", "selection_loss", "importance"):
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(run.result["carc"].values, whole["carc"].values)


@pytest.mark.parametrize("layout", ["double", "single"])
def test_figures_hide_no_data_and_clip_no_text(runs, layout):
    import matplotlib.pyplot as plt

    from netphys.plotting.style import clipped_texts, covered_data, overlapping_labels

    _, run, _ = runs
    for stem, make, _ in CARPruning().figure_specs(run.result):
        fig = make(layout)
        try:
            assert covered_data(fig) == [], (stem, layout)
            assert clipped_texts(fig) == [], (stem, layout)
            assert overlapping_labels(fig) == [], (stem, layout)
        finally:
            plt.close(fig)


@pytest.mark.parametrize("bad, field", [({"curve_keep_ratio": 0.0}, "curve_keep_ratio"),
                                        ({"curve_keep_ratio": 1.5}, "curve_keep_ratio"),
                                        ({"layers": ["conv9_9"]}, "layers"),
                                        ({"layers": ["pool1"]}, "layers"),
                                        ({"methods": ["car", "l1"]}, "methods"),
                                        ({"max_drop": 1.0}, "max_drop"),
                                        ({"data": "no/such/folder"}, "data"),
                                        ({"carc_layer": "conv5_1"}, "carc_layer")])
def test_bad_config_is_refused_before_anything_is_written(tmp_path, bad, field):
    out = tmp_path / "never"
    with pytest.raises(NetphysError, match=f"'{field}' parameter"):
        run_experiment("car.all", {**TINY, **bad}, out, progress=False)
    assert not out.exists()


# ----------------------------------------------------------------------------- GreedyPruner.fit(removed=)
def _net(c1=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(c1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(24, classes))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        net[1].running_var.fill_(1.0)
    return net.eval()


def _data(net, n, seed):
    x = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = net(x).argmax(1).numpy()
    return x, y


@pytest.mark.parametrize("method", ["car", "car_oneshot", "incoming", "outgoing", "random"])
def test_resumed_path_continues_the_uninterrupted_one(method):
    net = _net()
    sel, tst = _data(net, 40, 1), _data(net, 40, 2)
    full = GreedyPruner(net, "0", method=method, n_keep=2, random_state=3).fit(sel, tst)
    a = GreedyPruner(net, "0", method=method, n_keep=5, random_state=3).fit(sel, tst)
    b = GreedyPruner(net, "0", method=method, n_keep=2, random_state=3).fit(sel, tst, removed=a.removed_)
    p = full.path_
    for v in ("removed", "n_kept", "selection_accuracy", "test_accuracy", "selection_loss", "importance", "tied"):
        joined = np.concatenate([a.path_[v].values, b.path_[v].values[1:]])
        np.testing.assert_allclose(joined, p[v].values, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(b.removed_, full.removed_)
    np.testing.assert_array_equal(b.kept_, full.kept_)
    assert b.path_.attrs["n_start_removed"] == 3
    assert b.path_.attrs["start_removed"] == ",".join(map(str, a.removed_))
    if method == "car":  # the first step's CAR of every remaining filter, on the start network
        np.testing.assert_allclose(b.path_["filter_importance"].values[1], p["filter_importance"].values[4],
                                   equal_nan=True)
        assert b.importance_["filter"].values.tolist() == np.flatnonzero(a.kept_).tolist()
        np.testing.assert_allclose(b.importance_["car"].values, p["filter_importance"].values[4][a.kept_])


def test_resumed_path_stops_at_the_intact_networks_drop():
    net = _net(c1=10, seed=1)
    sel, tst = _data(net, 60, 3), _data(net, 60, 4)
    full = GreedyPruner(net, "0", max_drop=0.2).fit(sel, tst)
    k = max(1, len(full.removed_) // 2)
    b = GreedyPruner(net, "0", max_drop=0.2).fit(sel, tst, removed=full.removed_[:k])
    np.testing.assert_array_equal(b.removed_, full.removed_)
    assert b.path_.attrs["stopped_by"] == full.path_.attrs["stopped_by"]


def test_bad_start_is_refused():
    net = _net()
    sel = _data(net, 20, 1)
    pr = GreedyPruner(net, "0", n_keep=1)
    with pytest.raises(NetphysError, match="'removed' parameter of GreedyPruner.fit must be at most 7"):
        pr.fit(sel, removed=list(range(8)))
    with pytest.raises(NetphysError, match="'removed' parameter"):
        pr.fit(sel, removed=[0, 0])
    with pytest.raises(NetphysError, match="'removed' parameter"):
        pr.fit(sel, removed=[9])
    assert not hasattr(pr, "path_")


def test_stop_step_known_answers():
    assert stop_step([1.0, 0.99, 0.96, 0.94, 0.97], 0.05) == (2, False)  # 0.94 is the first > 5 % below
    assert stop_step([0.5, 0.5, 0.49], 0.05) == (2, True)  # never: the end of the path, censored
    assert stop_step([0.8, 0.7, np.nan], 0.05) == (0, False)
    assert stop_step([0.8, 0.79, np.nan, np.nan], 0.05) == (1, True)


def test_every_preset_is_registered_and_validates(shared_data_module):
    """The presets the README names: their configs pass validation (layers exist, data folders found)."""
    from netphys.experiments.car import VGG16_CONV, LayersCARConfig, QuickCARConfig
    from netphys.experiments.registry import experiment_names

    assert {"car.all", "car.quick", "car.layers", "car.efficientnet"} <= set(experiment_names())
    QuickCARConfig().validate()
    layers = LayersCARConfig().validate()
    assert layers.layers == VGG16_CONV and not layers.finetune and layers.n_images == 200

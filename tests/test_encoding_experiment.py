"""encoding.* experiments: a CI-sized run (report, tables, figures in both layouts), reuse of every cached
piece on a rerun, bad configs refused before anything is written."""
from __future__ import annotations

import numpy as np
import pytest

from netphys._validation import NetphysError
from netphys.experiments import run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

#: one layer (no Gabor bank), 2 neurons, RAR of 2 neurons to half the filters, 5 DeepTune steps, 2 restarts,
#: one-shot CAR of the layer on 40 Imagenette images at two compression levels
TINY = {"models": ["netphys_vgg16:conv4_1"], "gabor": False, "n_neurons": 2, "rar_neurons": 2,
        "deeptune_neurons": 2, "deeptune_steps": 5, "deeptune_restarts": 2, "deeptune_size": 32,
        "rar_curve_keep_ratio": 0.5, "car_compression": [0.5, 0.9], "car_images": 40}


@pytest.fixture(autouse=True)
def _blas_one_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def shared_v4():
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "cowley-v4").is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_v4):
    from threadpoolctl import threadpool_limits

    out = tmp_path_factory.mktemp("enc") / "run"
    with threadpool_limits(1):
        first = run_experiment("encoding.v4", TINY, out, progress=False)
        again = run_experiment("encoding.v4", TINY, out, progress=False)
    return first, again


def test_report_tables_and_result(runs):
    first, _ = runs
    out = first.out
    assert (out / "report.html").is_file()
    for name in ("encoding_summary", "neurons", "rar", "car_compression", "deeptune_stability"):
        assert (out / f"{name}.csv").is_file(), name
    res = first.result
    assert res.sizes["unit"] == 2 and list(res["model"].values) == ["netphys_vgg16:conv4_1/ridge"]
    assert np.isfinite(res["r"].values).all()
    assert np.isfinite(res["r_corrected"].values).all()          # session 210325 has single trials
    assert res["weight_map"].dims == ("best_unit", "wm_row", "wm_col")
    assert res["filter_importance"].sizes["channel"] == int(res["rar_n_filters"])
    # RAR: the path starts at every filter; the ratio is filters / kept at the stop
    assert (res["rar_n_kept"].values[:, 0] == int(res["rar_n_filters"])).all()
    np.testing.assert_allclose(res["rar_compression_ratio"].values,
                               int(res["rar_n_filters"]) / res["rar_stop_n_kept"].values)
    # CAR: level 0 is the uncompressed model; the levels remove round(c * 128) filters in the path's order
    assert list(res["car_level"].values) == [0.0, 0.5, 0.9]
    assert list(res["car_n_kept"].values) == [128, 64, 13]
    np.testing.assert_array_equal(res["car_r"].values[:, 0], res["r"].values[:, 0])
    assert np.isfinite(res["car_r"].values).all() and np.isfinite(res["car_r_corrected"].values).all()
    assert res["car_path_removed"].values[0] == -1 and res["car_path_removed"].sizes["car_step"] == 116
    assert len(set(res["car_path_removed"].values[1:].tolist())) == 115
    assert res.attrs["car_method"] == "car_oneshot" and res.attrs["car_n_selection"] == 20
    np.testing.assert_array_equal(res["car_test_accuracy"].values,
                                  res["car_path_test_accuracy"].values[[0, 64, 115]])
    # DeepTune: one model + consensus + RAR- and CAR-compressed, both directions
    assert list(res["dt_model"].values) == ["netphys_vgg16:conv4_1/ridge", "consensus", "rar_compressed",
                                            "car_50%", "car_90%"]
    assert res.attrs["dt_reference_model"] == "netphys_vgg16:conv4_1/ridge"
    assert res["dt_images"].sizes["y"] == 32 and np.isfinite(res["dt_images"].values).all()
    assert np.isfinite(res["dt_restart_similarity"].values).all()
    assert np.isfinite(res["dt_consensus_similarity"].values[:, :, [0, 2, 3, 4]]).all()
    assert np.isfinite(res["dt_uncompressed_similarity"].values[:, :, 2:]).all()
    assert np.isnan(res["dt_uncompressed_similarity"].values[:, :, :2]).all()
    html = (out / "report.html").read_text()
    assert "RAR compression ratio" in html and "DeepTune" in html and "CAR compression of" in html


def test_greedy_car_compression_is_checkpointed_and_starts_like_the_one_shot(tmp_path, runs):
    """car_method='car' runs the greedy path in cached pieces of 8 steps (resumable); its first removal is the
    filter of smallest CAR on the intact network, as the one-shot ranking's first."""
    from threadpoolctl import threadpool_limits

    cfg = {**TINY, "car_method": "car", "car_compression": [0.1], "rar_neurons": 0, "deeptune_neurons": 1,
           "deeptune_steps": 2}
    with threadpool_limits(1):
        res = run_experiment("encoding.v4", cfg, tmp_path / "greedy", progress=False, report=False)
    assert res.cache["car_steps"]["computed"] == 2 and "car_path" not in res.cache   # 13 steps: 8 + 5
    r = res.result
    assert list(r["car_n_kept"].values) == [128, 115] and r.attrs["car_method"] == "car"
    assert r["car_path_removed"].sizes["car_step"] == 14
    assert len(set(r["car_path_removed"].values[1:].tolist())) == 13
    one_shot = runs[0].result
    assert r["car_path_removed"].values[1] == one_shot["car_path_removed"].values[1]
    np.testing.assert_array_equal(r["car_r"].values[:, 0], one_shot["car_r"].values[:, 0])
    # no RAR path, so no (empty) RAR-compressed DeepTune column; the CAR-compressed one is there
    assert list(r["dt_model"].values) == ["netphys_vgg16:conv4_1/ridge", "consensus", "car_10%"]


def test_car_compressed_features_are_the_masked_networks(shared_v4):
    """Zeroing the removed filters' features (what the experiment refits on) equals recording the layer of the
    network with those filters masked (the CAR-compressed network)."""
    import torch

    from netphys.interventions import mask_filters
    from netphys.models import load_model
    from netphys.readout.encoding import layer_features

    model = load_model("netphys_vgg16")
    images = np.random.default_rng(3).integers(0, 256, (6, 48, 48, 3), dtype=np.uint8)
    removed = [0, 5, 17, 127]
    full = layer_features(model, "conv4_1", images).values
    with torch.no_grad(), mask_filters(model, "conv4_1", removed):
        masked = layer_features(model, "conv4_1", images).values
    zeroed = full.copy()
    zeroed[:, removed] = 0.0
    assert np.abs(full[:, removed]).max() > 0
    np.testing.assert_array_equal(masked, zeroed)


def test_car_task_per_network(shared_v4):
    from netphys.experiments.encoding import EncodingV4Config, _car_task

    cfg = EncodingV4Config()
    folder, ci, name = _car_task(cfg, "netphys_vgg16", "t")
    assert folder.name == "val" and ci is None and name == "imagenette-64/val"
    folder, ci, name = _car_task(cfg, "efficientnet_lite0", "t")
    assert ci["n01440764"] == 0 and "1000-way" in name
    assert _car_task(cfg, "hed_vgg16", "t") is None   # no classification head: skipped, said in the report


def test_rerun_recomputes_nothing(runs):
    _, again = runs
    assert again.cache, "no pieces"
    assert all(v["computed"] == 0 for v in again.cache.values()), again.cache
    assert "features" not in __import__("json").loads(again.result.attrs["timings"])


@pytest.mark.parametrize("layout", ["double", "single"])
def test_figures_hide_no_data_and_clip_no_text(runs, layout):
    import matplotlib.pyplot as plt

    from netphys.experiments.encoding import EncodingV4
    from netphys.plotting.style import clipped_texts, covered_data

    specs = EncodingV4().figure_specs(runs[0].result)
    assert [s[0] for s in specs] == ["r_by_layer", "weight_maps", "rar_curves", "car_compression", "deeptune_grid",
                                     "polar_spectra"]
    for stem, make, _ in specs:
        fig = make(layout)
        try:
            assert covered_data(fig) == [], (stem, layout)
            assert clipped_texts(fig) == [], (stem, layout)
        finally:
            plt.close(fig)


@pytest.mark.parametrize("bad, field", [
    ({"models": ["netphys_vgg16:conv9_9"]}, "models"),
    ({"models": ["netphys_vgg16"]}, "models"),
    ({"sessions": ["999999"]}, "sessions"),
    ({"cv": 100000}, "cv"),
    ({"estimators": ["ols"]}, "estimators"),
    ({"deeptune_models": ["netphys_vgg16:conv5_1"]}, "deeptune_models"),
    ({"rar_neurons": 3}, "rar_neurons"),
    ({"max_drop": 1.5}, "max_drop"),
    ({"car_compression": [0.0]}, "car_compression"),
    ({"car_compression": [1.0]}, "car_compression"),
    ({"car_compression": [0.5, 0.5]}, "car_compression"),
    ({"car_method": "random"}, "car_method"),
    ({"car_images": 2}, "car_images"),
    ({"car_data": "no/such/folder"}, "car_data"),
])
def test_bad_config_is_refused_before_anything_is_written(tmp_path, shared_v4, bad, field):
    out = tmp_path / "never"
    with pytest.raises(NetphysError, match=field):
        run_experiment("encoding.v4", {**TINY, **bad}, out, progress=False)
    assert not out.exists()


def test_both_experiments_registered_and_configs_validate(shared_v4):
    from netphys.experiments.encoding import (
        EncodingAllConfig,
        EncodingV4Config,
        parse_model_spec,
    )
    from netphys.experiments.registry import experiment_names

    assert {"encoding.v4", "encoding.all"} <= set(experiment_names())
    EncodingV4Config().validate()
    assert parse_model_spec("hed_vgg16:conv3_1@7") == ("hed_vgg16", "conv3_1", 7)
    assert len(EncodingAllConfig().sessions) == 12

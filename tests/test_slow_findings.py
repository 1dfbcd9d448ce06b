"""Slow tier: the papers' findings on the shipped default model at demo scale (trends, not pixels).

Run before resolving an issue: ``python -m pytest -q -m slow tests/test_slow_findings.py``. Each test runs a
whole experiment through the runner (one shared output folder per session, so reruns resume).
"""
from __future__ import annotations

import numpy as np
import pytest

from netphys.experiments.runner import run_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fig3(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig3")
    return run_experiment("prune_distill.fig3", {"n_images": 1000, "realisations": 3}, out, progress=False).result


def _u(res, net, feat, layer):
    return float(res["information"].sel(network=net, feature=feat, layer=layer).mean("realisation"))


def _above_null(res, net, feat, layer):
    v = res.sel(network=net, feature=feat, layer=layer).mean("realisation")
    return float(v["information"] - v["null"] - v["null_band"])


def test_luminosity_is_pruned_after_the_first_layer(fig3):
    # Prune and distill: luminosity information collapses after conv1 in the trained net, not in the random one
    assert _u(fig3, "trained", "luminosity", "conv1_2") < _u(fig3, "random", "luminosity", "conv1_2") - 0.05
    assert _u(fig3, "trained", "luminosity", "conv1_1") > _u(fig3, "trained", "luminosity", "conv3_3")


def test_contrast_early_peak_then_below_random(fig3):
    assert _u(fig3, "trained", "contrast", "conv1_1") > _u(fig3, "random", "contrast", "conv1_1")
    deep = ["conv4_3", "conv5_3", "fc7"]
    assert np.mean([_u(fig3, "trained", "contrast", l) for l in deep]) <= \
        np.mean([_u(fig3, "random", "contrast", l) for l in deep]) + 0.005


def test_category_information_rises_late_above_the_null(fig3):
    assert _above_null(fig3, "trained", "category", "fc7") > 0.1
    assert _u(fig3, "trained", "category", "fc7") > _u(fig3, "random", "category", "fc7") + 0.1
    assert _above_null(fig3, "random", "category", "fc7") < 0.03


def test_null_tracks_pt_bias_on_random_networks(fig3):
    # for the random network, the late-layer category information is at its shuffle null
    r = fig3.sel(network="random", feature="category")
    assert float(abs(r["information"] - r["null"]).mean()) < 0.03


def test_decoding_accuracy_rises_with_depth(tmp_path):
    res = run_experiment("prune_distill.fig5", {"n_images": 1000, "n_subsamples": 10, "n_train": 70,
                                                "n_val": 30}, tmp_path, progress=False).result
    t = res["val_accuracy"].mean("subsample")
    assert float(t.sel(network="trained", layer="fc7")) > 0.6
    assert float(t.sel(network="trained", layer="fc7")) > float(t.sel(network="random", layer="fc7")) + 0.15
    assert float(t.sel(network="trained", layer="fc7")) > float(t.sel(network="trained", layer="conv1_1"))


def test_intrinsic_dimension_hunchback(tmp_path):
    res = run_experiment("prune_distill.id_layers", {"n_images": 1000, "units": 500, "realisations": 1}, tmp_path,
                         progress=False).result
    idt = res["id"].sel(network="trained").mean("realisation")
    mid = float(idt.sel(layer=["conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1"]).max())
    assert mid > float(idt.sel(layer="conv1_1")) and mid > float(idt.sel(layer="fc8"))

"""synthesis.preferred_images: layout of the labelled result, the runner's contract, min/max, report."""
from __future__ import annotations

import numpy as np
import pytest

from netphys._validation import NetphysError
from netphys.experiments import run_experiment
from netphys.testing import check_experiment

# units (3 per layer) != restarts (2) != deeptune restarts: a transposed restart/unit axis cannot pass
SMALL = {"layers": ["conv2_1", "fc7"], "units": 3, "iterations": 4, "restarts": 2, "deeptune_steps": 6,
         "deeptune_restarts": 3, "directions": ["max", "min"], "freq_cut": 0.25, "random_state": 0}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_experiment("synthesis.preferred_images", SMALL, tmp_path_factory.mktemp("pi") / "run", progress=False)


def test_result_layout_and_best_images(run):
    res = run.result
    assert dict(res.sizes)["unit"] == 6 and list(res["method"].values) == ["evolve", "deeptune"]
    assert list(res["direction"].values) == ["max", "min"]
    assert sorted(set(res["layer"].values)) == ["conv2_1", "fc7"]
    for m, n_r in (("evolve", 2), ("deeptune", 3)):
        for d in ("max", "min"):
            sub = res.sel({"method": m, "direction": d})
            score = sub["score"].values[:, :n_r]
            assert np.isfinite(score).all() and np.isnan(sub["score"].values[:, n_r:]).all()
            best = score.max(1) if d == "max" else score.min(1)
            np.testing.assert_allclose(sub["best_of_restarts"].values, best)
            # the best image is the stored image of the best restart (uint8-rounded), unit by unit
            for u in range(res.sizes["unit"]):
                r = int(sub["best_restart"].values[u])
                assert r == (np.argmax(score[u]) if d == "max" else np.argmin(score[u]))
                stored = sub["images"].values[u, r].astype(np.float32) / 255
                np.testing.assert_allclose(stored, np.clip(sub["best_image"].values[u], 0, 1), atol=0.6 / 255)
    ev = res.sel({"method": "evolve"})
    hi, lo = (ev["best_of_restarts"].sel(direction=d).values for d in ("max", "min"))
    assert (hi >= lo).all() and (hi > lo).sum() >= 4  # post-ReLU units: a silent one can stay 0 both ways
    assert res["evolve_trace"].sizes["generation"] == 4 and res["deeptune_trace"].sizes["deeptune_restart"] == 3


def test_tables_figures_and_report(run):
    out = run.out
    html = (out / "report.html").read_text()
    for stem in ("evolve_conv2_1_max_best", "evolve_fc7_min_restarts", "deeptune_fc7_max_traces"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}_single.png").is_file()
    assert "Preferred images of single units" in html and "restart-to-restart" in html
    df = __import__("pandas").read_csv(out / "preferred_images.csv")
    assert len(df) == 2 * 2 * 6 and set(df["method"]) == {"evolve", "deeptune"}


def test_follows_the_runner_contract(tmp_path):
    stats = check_experiment("synthesis.preferred_images",
                             {**SMALL, "layers": ["conv3_1"], "units": 2, "directions": ["max"],
                              "deeptune_steps": 3}, out=tmp_path / "c")
    assert stats["rerun"]["evolve_layer"]["computed"] == 0


def test_bad_config_is_refused_before_work(tmp_path):
    with pytest.raises(NetphysError, match="space"):
        run_experiment("synthesis.preferred_images", {**SMALL, "space": "gan"}, tmp_path / "x", progress=False)
    with pytest.raises(NetphysError, match="directions"):
        run_experiment("synthesis.preferred_images", {**SMALL, "directions": ["up"]}, tmp_path / "x",
                       progress=False)

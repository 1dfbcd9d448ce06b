"""Journal figures and self-explaining reports: print-size fonts, widths, editable SVG text, no label
collisions, config/provenance tables and warning boxes (fast: synthetic results, one tiny run)."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from netphys._validation import NetphysError
from netphys.plotting.style import MIN_FONT_PT, WIDTHS, overlapping_labels, text_sizes

import matplotlib  # noqa: E402  (a hard dependency of netphys)
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LAYERS = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)] + \
    ["fc6", "fc7", "fc8"]
KINDS = ["conv"] * 13 + ["fc"] * 3


def fig3_result():
    rng = np.random.default_rng(0)
    feats = ["luminosity", "contrast", "orientation", "corner", "category"]
    shape = (2, 3, len(LAYERS), len(feats))
    info = 0.4 + 0.1 * rng.random(shape)
    info[:, :, :2, 2:4] = np.nan
    dims = ("network", "realisation", "layer", "feature")
    return xr.Dataset({"information": (dims, info), "null": (dims, 0.2 + 0.01 * rng.random(shape)),
                       "null_band": (dims, np.full(shape, 0.02))},
                      coords={"network": ["trained", "random"], "realisation": [0, 1, 2], "layer": LAYERS,
                              "feature": feats, "kind": ("layer", KINDS), "depth": ("layer", np.arange(16))},
                      attrs={"correction": "pt", "n_shuffles": 3})


def fig2_result():
    areas = ["V1", "LM", "LI", "LL"]
    n = np.array([6.0, 10, 17, 29, 50, 85, 145, 228])
    m = 7 - 5 * n[None, :] ** -0.7 + np.zeros((4, 1))
    return xr.Dataset({"n_units": (("area", "size"), np.tile(n, (4, 1))), "id_mean": (("area", "size"), m),
                       "id_sd": (("area", "size"), 0.2 + 0 * m), "saturates": ("area", [1, 1, 1, 0]),
                       "d_inf": ("area", [7.0, 7.1, 7.2, 6.0]), "fit_a": ("area", [5.0] * 4),
                       "fit_b": ("area", [0.7] * 4), "d_inf_boot_err": ("area", [0.1, 0.1, np.nan, 0.2]),
                       "d_inf_err": ("area", [0.1] * 4), "reliable": ("area", [True, True, True, False]),
                       "id_full": ("area", [6.9, 7.0, 7.1, 5.9])}, coords={"area": areas})


def paper_figures(layout):
    from netphys.experiments import population as pop
    from netphys.experiments import prune_distill as pd_

    r = fig3_result()
    rng = np.random.default_rng(1)
    inset = {"trained": rng.normal(0, 0.05, 48), "random": rng.normal(0, 0.03, 48)}
    ident = xr.Dataset({"id": (("network", "realisation", "layer"), 5 + rng.random((2, 3, 16)))},
                       coords={"network": ["trained", "random"], "realisation": [0, 1, 2], "layer": LAYERS,
                               "kind": ("layer", KINDS)})
    return {"fig3": pd_.plot_fig3(r, inset=inset, layout=layout),
            "fig4": pd_.plot_fig4(r.sel(feature=["luminosity", "contrast"]), layout=layout),
            "id_layers": pop.plot_id_layers(ident, layout=layout), "fig2": pop.plot_fig2(fig2_result(), layout=layout)}


@pytest.mark.parametrize("layout", ["double", "single"])
def test_paper_figures_are_print_sized_legible_and_uncluttered(layout):
    for name, fig in paper_figures(layout).items():
        assert fig.get_size_inches()[0] == pytest.approx(WIDTHS[layout]), name
        sizes = text_sizes(fig)
        assert sizes and min(s for _, s in sizes) >= MIN_FONT_PT, (name, min(sizes, key=lambda t: t[1]))
        assert overlapping_labels(fig) == [], name
        plt.close(fig)


def test_overlap_detector_finds_colliding_labels():
    fig, ax = plt.subplots(figsize=(1.0, 1.0))
    ax.set_xticks(range(20), [f"label{i}" for i in range(20)])
    assert overlapping_labels(fig)
    plt.close(fig)


def test_layout_is_validated():
    from netphys.experiments import prune_distill as pd_

    with pytest.raises(NetphysError, match="'layout' parameter of plot_fig3 must be one of 'single', 'double'"):
        pd_.plot_fig3(fig3_result(), layout="wide")


def test_saved_figure_has_editable_text_and_exact_width(tmp_path):
    from netphys.experiments import prune_distill as pd_
    from netphys.reports import save_figure

    fig = pd_.plot_fig3(fig3_result(), layout="single")
    paths = save_figure(fig, tmp_path / "fig3_single")
    assert sorted(p.suffix for p in paths) == [".pdf", ".png", ".svg"]
    svg = (tmp_path / "fig3_single.svg").read_text()
    assert "<text" in svg and "Luminosity" in svg  # text as text, not glyph paths
    assert 'width="252pt"' in svg  # 3.5 in x 72 pt
    assert b"FontFile2" in (tmp_path / "fig3_single.pdf").read_bytes()  # embedded TrueType (Type 42)
    plt.close(fig)


def test_report_tables_warning_box_and_null_warning():
    from netphys.reports import Report, null_warnings

    r = fig3_result()
    r["information"][:] = 0.1  # below the null everywhere
    msgs = null_warnings(r)
    assert len(msgs) == 1 and "not above the shuffle null" in msgs[0]
    assert null_warnings(fig3_result()) == []
    rep = Report("t").mapping({"layers": ("conv1_1", "fc6"), "bins": 20, "nested": {"a": 1}}, "config")
    rep.warning(msgs)
    html = rep.to_html()
    assert "<table class='kv'>" in html and "<th>nested.a</th><td>1</td>" in html
    assert "conv1_1, fc6" in html and '<div class="warning">' in html


def test_tiny_run_report_explains_itself(tmp_path):
    """60 images at 20 bins: the report opens with the intro, shows a warning box, config as a table."""
    import torch
    from PIL import Image

    from netphys.experiments import run_experiment

    torch.set_num_threads(1)
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(30):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.png")
    run = run_experiment("prune_distill.fig3", {"weights": "random", "images": str(root), "n_images": 60,
                                                "units": 4, "layers": ["conv1_1", "conv3_1"], "realisations": 1,
                                                "features": ["luminosity"], "n_shuffles": 2},
                         tmp_path / "out", progress=False)
    html = run.report.read_text()
    assert 'class="intro"' in html and "luminosity information falling" in html
    assert '<div class="warning">' in html and "60 images for 20 x 20" in html
    assert "<table class='kv'>" in html and "<th>n_images</th><td>60</td>" in html
    assert "&quot;n_images&quot;" not in html  # no escaped JSON dump
    for stem in ("fig3", "fig3_single"):
        for ext in ("png", "svg", "pdf"):
            assert (tmp_path / "out" / f"{stem}.{ext}").is_file()

"""Journal figures and self-explaining reports: print-size fonts, widths, editable SVG text, no label
collisions, config/provenance tables and warning boxes (fast: synthetic results, one tiny run)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from netphys._validation import NetphysError
from netphys.plotting.style import (MIN_FONT_PT, WIDTHS, clear_texts, clipped_texts, covered_data,
                                    overlapping_labels, text_sizes)

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


def fig4_result():
    """Trained, random and three hybrids on luminosity and contrast (each hybrid with a null of its own)."""
    rng = np.random.default_rng(3)
    nets = ["trained", "random", "hybrid:1", "hybrid:2", "hybrid:3"]
    feats = ["luminosity", "contrast"]
    shape = (len(nets), 2, len(LAYERS), len(feats))
    dims = ("network", "realisation", "layer", "feature")
    return xr.Dataset({"information": (dims, 0.3 + 0.1 * rng.random(shape)),
                       "null": (dims, 0.2 + 0.01 * rng.random(shape)), "null_band": (dims, np.full(shape, 0.02))},
                      coords={"network": nets, "realisation": [0, 1], "layer": LAYERS, "feature": feats,
                              "kind": ("layer", KINDS), "depth": ("layer", np.arange(16))})


def fig5_result():
    rng = np.random.default_rng(4)
    nets, n = ["trained", "random"], len(LAYERS)
    acc = np.clip(np.linspace(0.2, 0.9, n)[None, :, None] + 0.05 * rng.standard_normal((2, n, 5)), 0, 1)
    return xr.Dataset({"val_accuracy": (("network", "layer", "subsample"), acc),
                       "train_accuracy": (("network", "layer", "subsample"), np.clip(acc + 0.2, 0, 1)),
                       "n_units": (("network", "layer"), np.full((2, n), 100)),
                       "category_information": (("network", "layer"), 0.05 + 0.3 * rng.random((2, n))),
                       "category_null": (("network", "layer"), np.full((2, n), 0.05))},
                      coords={"network": nets, "layer": LAYERS, "kind": ("layer", KINDS)}, attrs={"chance": 0.1})


#: the orientation rig's layers (reference CNN) and the shipped VGG's hidden layers (default model)
ORI = ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc7"]
VGG = LAYERS[:-1]


def tuning_result(n=10):
    """Tuning curves of ``n`` channels from sharply tuned to flat (one of them silent to half the gratings)."""
    rng = np.random.default_rng(2)
    ori, ph, sf = np.arange(0, 180, 15.0), np.array([0.0, 90, 180, 270]), np.array([2.0, 4.0, 8.0])
    pref, sharp = rng.uniform(0, 180, n), np.linspace(4, 0, n)
    r = np.exp(sharp[:, None] * (np.cos(np.deg2rad(2 * (ori[None] - pref[:, None]))) - 1))
    r[0] = np.where(r[0] > 0.5, r[0], 0.0)
    vals = 3 * r[:, :, None, None] * (1 + 0.1 * rng.random((n, ori.size, ph.size, sf.size)))
    return xr.DataArray(vals, dims=("unit", "orientation", "phase", "sf"),
                        coords={"unit": np.arange(n), "orientation": ori, "phase": ph, "sf": sf,
                                "layer": ("unit", ["conv2"] * n), "channel": ("unit", np.arange(n))},
                        attrs={"sf_units": "cycles/image", "units": "a.u."})


def gosi_by_layer(layers):
    """gOSI per layer (some piled up near 1, under the percentages) and two shuffles of each."""
    rng = np.random.default_rng(5)
    g, shuf = {}, {}
    for i, l in enumerate(layers):
        n = 16 * 2 ** min(i // 2, 4)
        g[l] = rng.beta(5, 1, n) if i % 3 == 2 else rng.beta(2, 4, n)
        shuf[l] = rng.beta(1.5, 6, (2, n))
    return g, shuf


def dynamics_result():
    rng = np.random.default_rng(6)
    ep = np.arange(16)
    hist = pd.DataFrame({"train_loss": np.r_[np.nan, 2.2 * np.exp(-ep[1:] / 6)],
                         "val_loss": 2.3 * np.exp(-ep / 8) + 0.6, **{f"gosi_{l}": 0.2 + 0.1 * rng.random(16)
                                                                      for l in ORI}}, index=pd.Index(ep, name="epoch"))
    rho = [-1.0, -0.9, 0.95, 1.0, 0.1, -0.3, 0.6]
    return hist, pd.DataFrame({"rho": rho, "p": [0.001, 0.01, 0.01, 0.001, 0.7, 0.3, 0.1]}, index=ORI)


def sweep_result():
    rng = np.random.default_rng(7)
    rows = [("none", 0.0), ("shift", 0.0), ("flip", 0.0), ("shift+flip", 0.0), ("none", 0.5), ("none", 1.0)]
    sweep = pd.DataFrame([{"augmentation": a, "corruption": c, "test_loss": 1.5 + c + 0.1 * rng.random(),
                           **{f"gosi_{l}": 0.2 + 0.1 * rng.random() for l in ORI}} for a, c in rows])
    rho = pd.DataFrame({"rho_all": np.linspace(-1, 1, 7), "rho_augmentation": np.linspace(1, -1, 7)}, index=ORI)
    return sweep, rho


def ablation_result(layers):
    rng = np.random.default_rng(8)
    n = len(layers)
    top, bottom = 2.5 * rng.random(n), 2.5 * rng.random(n)
    return pd.DataFrame({"d_top": top, "d_bottom": bottom, "d_random": (top + bottom) / 2,
                         "d_random_sd": 0.2 * rng.random(n), "marked": top > 2 * bottom}, index=layers)


def invariance_result(layers, ablated):
    rng = np.random.default_rng(9)
    rows = []
    for net, abl, grp in [("intact", "none", "none")] + [(f"{a} {g}-gOSI ablated", a, g) for a in ablated
                                                          for g in ("top", "bottom")]:
        for l in layers:
            rows.append({"layer": l, "direction": "all", "mean": 0.1 + 0.6 * rng.random(), "sem": 0.05,
                         "network": net, "ablated_layer": abl, "group": grp})
    return pd.DataFrame(rows)


def v1_result(layers):
    rng = np.random.default_rng(10)
    g, _ = gosi_by_layer(layers)
    net = xr.Dataset({"gosi": ("unit", np.concatenate(list(g.values())))},
                     coords={"layer": ("unit", np.concatenate([[l] * v.size for l, v in g.items()]))})
    return net, {"V1 static": xr.Dataset({"gosi": ("unit", rng.beta(3, 3, 103))}),
                 "V1 drifting": xr.Dataset({"gosi": ("unit", rng.beta(3, 3, 290))})}


def paper_figures(layout):
    """Every paper figure function at ``layout``, on results shaped like the experiments' (the orientation
    figures both for the 7-layer rig and for the 15 hidden layers of the shipped VGG)."""
    from netphys.experiments import population as pop
    from netphys.experiments import prune_distill as pd_
    from netphys.plotting import selectivity as sel

    r = fig3_result()
    rng = np.random.default_rng(1)
    inset = {"trained": rng.normal(0, 0.05, 48), "random": rng.normal(0, 0.03, 48)}
    ident = xr.Dataset({"id": (("network", "realisation", "layer"), 5 + rng.random((2, 3, 16)))},
                       coords={"network": ["trained", "random"], "realisation": [0, 1, 2], "layer": LAYERS,
                               "kind": ("layer", KINDS)})
    figs = {"fig3": lambda: pd_.plot_fig3(r, inset=inset, layout=layout),
            "fig4": lambda: pd_.plot_fig4(fig4_result(), layout=layout),
            "fig5": lambda: pop.plot_fig5(fig5_result(), layout=layout),
            "id_layers": lambda: pop.plot_id_layers(ident, layout=layout),
            "fig2": lambda: pop.plot_fig2(fig2_result(), layout=layout),
            "tuning_curves": lambda: sel.plot_tuning_curves(tuning_result(), layout=layout),
            "dynamics": lambda: sel.plot_dynamics(*dynamics_result(), ORI, epochs=15, layout=layout),
            "sweep": lambda: sel.plot_sweep(*sweep_result(), ORI, layout=layout)}
    for name, layers in (("rig", ORI), ("vgg", VGG)):
        ablated = layers[1:3]
        figs.update({
            f"gosi_histograms_{name}": lambda layers=layers: sel.plot_gosi_histograms(
                *gosi_by_layer(layers), ncols=(5 if layout == "double" else 3) if layers is VGG else None,
                layout=layout),
            f"ablation_{name}": lambda layers=layers: sel.plot_ablation(ablation_result(layers), layout=layout),
            f"invariance_{name}": lambda layers=layers, ablated=ablated: sel.plot_invariance(
                invariance_result(layers, ablated), layout=layout),
            f"v1_comparison_{name}": lambda layers=layers: sel.plot_v1_comparison(*v1_result(layers), layers,
                                                                                   layout=layout)})
    for name, make in figs.items():
        yield name, make()


@pytest.mark.parametrize("layout", ["double", "single"])
def test_paper_figures_are_print_sized_legible_and_uncluttered(layout):
    """Every paper figure: the layout's width, at most 9 in high, text >= 6 pt, no colliding labels, no text
    off the page, no legend, inset or in-panel text over data."""
    for name, fig in paper_figures(layout):
        assert fig.get_size_inches()[0] == pytest.approx(WIDTHS[layout]), name
        assert fig.get_size_inches()[1] <= 9.0, name
        sizes = text_sizes(fig)
        assert sizes and min(s for _, s in sizes) >= MIN_FONT_PT, (name, min(sizes, key=lambda t: t[1]))
        assert overlapping_labels(fig) == [], name
        assert clipped_texts(fig) == [], name
        assert covered_data(fig) == [], name
        plt.close(fig)


def test_overlap_detector_finds_colliding_labels():
    fig, ax = plt.subplots(figsize=(1.0, 1.0))
    ax.set_xticks(range(20), [f"label{i}" for i in range(20)])
    assert overlapping_labels(fig)
    plt.close(fig)


def _panel(**kw):
    fig, ax = plt.subplots(figsize=(3.5, 2.5), layout="constrained", **kw)
    return fig, ax


def test_cover_detector_fires_on_a_legend_on_a_line_and_is_quiet_beside_it():
    # bad: a line of two points whose segment runs under the legend (no vertex inside the legend's box)
    fig, ax = _panel()
    ax.plot([0, 1], [0.9, 0.9], label="a line under the legend")
    ax.plot([0, 1], [0.0, 0.1], label="low")
    ax.legend(loc="upper center")
    found = covered_data(fig)
    assert found and found[0][0].startswith("legend") and "a line under the legend" in found[0][2]
    plt.close(fig)
    # good: the same legend where the panel is empty, and a figure legend outside the panel
    for place in ("axes", "figure"):
        fig, ax = _panel()
        ax.plot([0, 1], [0.9, 0.9], label="high")
        ax.plot([0, 1], [0.0, 0.1], label="low")
        if place == "axes":
            ax.set_ylim(-0.05, 1.6)
            ax.legend(loc="upper center", ncols=2)
        else:
            fig.legend(loc="outside lower center", ncols=2)
        assert covered_data(fig) == [], place
        plt.close(fig)


@pytest.mark.parametrize("case", ["bars", "scatter", "band", "errorbar", "inset", "text", "figure legend"])
def test_cover_detector_sees_every_kind_of_data_and_cover(case):
    fig, ax = _panel()
    x = np.linspace(0, 1, 40)
    if case == "bars":
        ax.bar(x[::5], 1 + x[::5], width=0.1, label="bars")
    elif case == "scatter":
        ax.scatter(x, x, label="points")
    elif case == "band":
        ax.fill_between(x, 0, 1, alpha=0.3, label="band")
    elif case == "errorbar":
        ax.errorbar([0, 1], [0, 0], yerr=[5, 5], fmt="o", label="SD")
        ax.set_ylim(-6, 6)
    else:
        ax.plot([0, 1], [0, 1], label="line")  # two points: only its segment passes under the cover
    if case == "inset":
        ax.inset_axes([0.3, 0.3, 0.4, 0.4]).plot([0, 1], [0, 1])
    elif case == "text":
        ax.text(0.5, 0.5, "a statistic", transform=ax.transAxes, ha="center", va="center")
    elif case == "figure legend":
        fig.legend(loc="center")
    else:
        ax.legend(loc="center" if case != "errorbar" else "upper left", bbox_to_anchor=None)
    cover = {"inset": "inset", "text": "text", "figure legend": "figure legend"}.get(case, "legend of")
    found = covered_data(fig)
    assert found and all(f[0].startswith(cover) for f in found), (case, found)
    plt.close(fig)


def test_clear_texts_lifts_data_from_under_a_statistic_and_clipped_texts_sees_the_page_edge():
    fig, ax = _panel()
    ax.bar(np.arange(10), np.r_[np.ones(9), 10.0])
    ax.text(0.97, 0.97, "42% > 0.33", transform=ax.transAxes, ha="right", va="top")
    assert covered_data(fig)
    clear_texts(ax)
    assert covered_data(fig) == [] and clipped_texts(fig) == []
    fig.suptitle("a title far too long for a panel three and a half inches wide, running off both of its edges")
    assert clipped_texts(fig)
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

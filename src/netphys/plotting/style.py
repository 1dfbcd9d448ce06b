"""Shared plotting style: the papers' look (x = layer index, conv and FC markers, error bars) at print size.

Every paper figure function takes ``layout="single"`` (one journal column, 3.5 in wide) or
``layout="double"`` (the full page width, 7 in) and draws inside :func:`paper_style`: text is set in
points at print size (never below :data:`MIN_FONT_PT`), so the saved figure must not be scaled. Files
written by :func:`netphys.reports.save_figure` keep text as text (SVG ``svg.fonttype: none``, PDF Type-42
fonts), so a journal or a co-author can edit labels.

:func:`text_sizes` and :func:`overlapping_labels` inspect a drawn figure; the tests use them to check
that every figure is legible and that no two labels collide.
"""
from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager

# the user's backend is left alone: importing netphys.plotting never calls matplotlib.use (headless
# machines fall back to Agg by themselves)
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["TRAINED", "RANDOM", "HYBRID", "CONV_MARKER", "FC_MARKER", "WIDTHS", "LAYOUTS", "MIN_FONT_PT",
           "PAPER_RC", "paper_style", "paper_plot", "check_layout", "figure_width", "paper_figure", "new_axes",
           "layer_axis", "plot_layer_curve", "fc_band_label", "marker_handles", "text_sizes", "overlapping_labels"]

TRAINED = "#1f4e9c"
RANDOM = "#c0392b"
HYBRID = "#2e8b57"
CONV_MARKER = "o"
FC_MARKER = "s"
FC_SHADE = "0.9"

#: figure widths in inches: one journal column and the full page width
WIDTHS = {"single": 3.5, "double": 7.0}
LAYOUTS = tuple(WIDTHS)
#: the smallest text size (points, at print size) any paper figure uses
MIN_FONT_PT = 6.0

#: rcParams of :func:`paper_style` (sizes in points at print size; text kept as text in SVG/PDF)
PAPER_RC = {
    "font.size": 7.0,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7.0,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6.5,
    "legend.title_fontsize": 6.5,
    "figure.titlesize": 7.5,
    "figure.labelsize": 7.0,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "xtick.major.pad": 2.0,
    "ytick.major.pad": 2.0,
    "axes.labelpad": 2.0,
    "axes.titlepad": 3.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "legend.borderaxespad": 0.3,
    "errorbar.capsize": 1.5,
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.dpi": 300,
    "figure.constrained_layout.h_pad": 0.03,
    "figure.constrained_layout.w_pad": 0.03,
}


@contextmanager
def paper_style():
    """Context in which figures are drawn and saved at print size (see :data:`PAPER_RC`).

    Examples
    --------
    >>> from netphys.plotting.style import paper_style
    >>> with paper_style():
    ...     pass  # make or save a figure here
    """
    with plt.rc_context(PAPER_RC):
        yield


def check_layout(layout, func: str) -> str:
    """Validate ``layout`` (``"single"`` or ``"double"``) for ``func``."""
    from .._validation import check_choice

    return check_choice(layout, "layout", func, LAYOUTS)


def figure_width(layout: str, func: str = "figure_width") -> float:
    """Width in inches of a figure in ``layout`` (3.5 for ``"single"``, 7.0 for ``"double"``)."""
    return WIDTHS[check_layout(layout, func)]


def paper_plot(func):
    """Decorator of a figure function with a keyword ``layout``: validate it and draw in :func:`paper_style`."""
    default = inspect.signature(func).parameters["layout"].default

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        kwargs["layout"] = check_layout(kwargs.get("layout", default), func.__name__)
        with paper_style():
            return func(*args, **kwargs)

    return wrapper


def paper_figure(layout: str, height: float, *, func: str = "paper_figure", **subplots):
    """A constrained-layout Figure ``figure_width(layout)`` wide and ``height`` inches high.

    With ``subplots`` (``nrows``, ``ncols``, ``gridspec_kw`` ...) returns ``(fig, axes)`` like
    :func:`matplotlib.pyplot.subplots`; without, the bare Figure.
    """
    w = figure_width(layout, func)
    if subplots:
        return plt.subplots(figsize=(w, height), layout="constrained", **subplots)
    return plt.figure(figsize=(w, height), layout="constrained")


def new_axes(ax=None, figsize=(5.0, 3.4)):
    """``(fig, ax)``: ``ax`` and its figure, or a new constrained-layout figure of ``figsize``."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    else:
        fig = ax.figure
    return fig, ax


def _label_step(n: int, width_in: float | None, fontsize: float) -> int:
    """Label every ``step``-th of ``n`` rotated tick labels so neighbours keep >= 1.45 font sizes apart."""
    if width_in is None or n <= 1:
        return 1
    room = width_in * 72.0 / n  # points per tick
    return max(1, int(np.ceil(1.45 * fontsize / room)))


def layer_axis(ax, layers, kinds=None, rotate=True, *, width_in: float | None = None):
    """Label the x axis with the layers (ticks at 1..L), shading the FC layers' region.

    Parameters
    ----------
    ax : matplotlib Axes
    layers : sequence of str
    kinds : sequence of {"conv", "fc"}, optional
        FC layers get a grey band behind them (explain it in the caption or with :func:`fc_band_label`).
    rotate : bool
        Vertical tick labels (default True).
    width_in : float, optional
        The panel's width in inches; when the names would collide, only every k-th layer is named (a tick
        stays at every layer).

    Returns
    -------
    list of int
        The x positions 1..L.
    """
    x = list(range(1, len(layers) + 1))
    size = plt.rcParams["xtick.labelsize"]
    size = size if isinstance(size, (int, float)) else 7.0
    step = _label_step(len(layers), width_in, size) if rotate else 1
    ax.set_xticks(x)
    ax.set_xticklabels([str(l) if i % step == 0 else "" for i, l in enumerate(layers)],
                       rotation=90 if rotate else 0, ha="center")
    if kinds is not None:
        fc = [i + 1 for i, k in enumerate(kinds) if k == "fc"]
        if fc:
            ax.axvspan(min(fc) - 0.5, max(fc) + 0.5, color=FC_SHADE, zorder=0, lw=0)
    ax.set_xlim(0.4, len(layers) + 0.6)
    ax.spines[["top", "right"]].set_visible(False)
    return x


def fc_band_label():
    """A legend handle for the grey FC band (``(handle, label)``)."""
    from matplotlib.patches import Patch

    return Patch(color=FC_SHADE, lw=0), "FC band"


def marker_handles(kinds):
    """Legend handles explaining the layer markers that occur in ``kinds`` (conv: circle, FC: square)."""
    from matplotlib.lines import Line2D

    out = []
    if "conv" in list(kinds):
        out.append((Line2D([], [], ls="none", marker=CONV_MARKER, color="0.35", ms=3.5), "conv layer"))
    if "fc" in list(kinds):
        out.append((Line2D([], [], ls="none", marker=FC_MARKER, color="0.35", ms=3.5), "FC layer"))
        out.append(fc_band_label())
    return out


def plot_layer_curve(ax, layers, kinds, mean, sd=None, color=TRAINED, label=None, ms=3.5):
    """One curve over layers: conv layers as circles, FC layers as squares, SD error bars."""
    x = np.arange(1, len(layers) + 1)
    mean = np.asarray(mean, dtype=float)
    ax.plot(x, mean, "-", color=color, lw=1.0, label=label)
    for marker, kind in ((CONV_MARKER, "conv"), (FC_MARKER, "fc")):
        sel = np.array([k == kind for k in kinds])
        if sel.any():
            ax.errorbar(x[sel], mean[sel], yerr=None if sd is None else np.asarray(sd)[sel], fmt=marker,
                        color=color, ms=ms, capsize=1.5, lw=0.8)
    return ax


# ----------------------------------------------------------------------------- inspection
def _texts(fig):
    """Every text a drawn ``fig`` shows: ``(artist, group)``; tick labels only for ticks inside the view."""
    from matplotlib.text import Text

    seen, out = set(), []

    def add(t, group):
        if id(t) in seen or not isinstance(t, Text) or not t.get_visible() or not t.get_text().strip():
            return
        seen.add(id(t))
        out.append((t, group))

    def all_axes(axs):
        for a in axs:
            yield a
            yield from all_axes(getattr(a, "child_axes", []))

    for ax in all_axes(fig.axes):
        if not ax.get_visible():
            continue
        for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")) if ax.axison else ():
            if not axis.get_visible():
                continue
            try:  # the ticks matplotlib draws (stale Tick objects beyond them keep old texts)
                ticks = axis._update_ticks()
            except Exception:  # pragma: no cover - private API changed
                lo, hi = sorted(axis.get_view_interval())
                ticks = [t for t in list(axis.majorTicks) + list(axis.minorTicks)
                         if t.get_loc() is not None and lo <= t.get_loc() <= hi]
            for tick in ticks:
                for lab in (tick.label1, tick.label2):
                    add(lab, ("tick", id(ax), name))
            add(axis.label, ("label", id(ax), name))
            add(axis.get_offset_text(), ("offset", id(ax), name))
        for t in (ax.title, ax._left_title, ax._right_title):
            add(t, ("title", id(ax)))
        for t in ax.texts:
            add(t, ("text", id(ax)))
        leg = ax.get_legend()
        if leg is not None and leg.get_visible():
            for t in leg.get_texts() + [leg.get_title()]:
                add(t, ("legend", id(leg)))
    for leg in fig.legends:
        for t in leg.get_texts() + [leg.get_title()]:
            add(t, ("legend", id(leg)))
    for t in fig.texts:
        add(t, ("figtext",))
    for attr in ("_suptitle", "_supxlabel", "_supylabel"):
        t = getattr(fig, attr, None)
        if t is not None:
            add(t, ("suptitle",))
    return out


def text_sizes(fig) -> list[tuple[str, float]]:
    """``(text, size in points)`` of every text ``fig`` shows (drawn first), at the figure's own size."""
    fig.canvas.draw()
    return [(t.get_text(), float(t.get_fontsize())) for t, _ in _texts(fig)]


def overlapping_labels(fig, tolerance_pt: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of texts of ``fig`` whose boxes overlap by more than ``tolerance_pt`` points (drawn first).

    Tick labels, axis labels, titles, in-axes texts, legend entries and figure texts are compared with
    each other, across all panels.
    """
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    tol = tolerance_pt * fig.dpi / 72.0
    items = [(t, g, t.get_window_extent(r)) for t, g in _texts(fig)]
    pairs = []
    for i in range(len(items)):
        ti, gi, bi = items[i]
        for j in range(i + 1, len(items)):
            tj, gj, bj = items[j]
            if gi[0] == "legend" and gi == gj:
                continue
            w = min(bi.x1, bj.x1) - max(bi.x0, bj.x0)
            h = min(bi.y1, bj.y1) - max(bi.y0, bj.y0)
            if w > tol and h > tol:
                pairs.append((ti.get_text(), tj.get_text()))
    return pairs

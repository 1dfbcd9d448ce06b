"""Shared plotting style: the papers' look (x = layer index, conv and FC markers, error bars) at print size.

Every paper figure function takes ``layout="single"`` (one journal column, 3.5 in wide) or
``layout="double"`` (the full page width, 7 in) and draws inside :func:`paper_style`: text is set in
points at print size (never below :data:`MIN_FONT_PT`), so the saved figure must not be scaled. Files
written by :func:`netphys.reports.save_figure` keep text as text (SVG ``svg.fonttype: none``, PDF Type-42
fonts), so a journal or a co-author can edit labels.

:func:`text_sizes`, :func:`overlapping_labels`, :func:`covered_data` and :func:`clipped_texts` inspect a
drawn figure; the tests use them to check that every figure is legible, that no two labels collide, that
no legend, inset or in-panel text hides plotted data, and that no text runs off the figure.
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
           "PAPER_RC", "paper_style", "paper_plot", "check_layout", "figure_width", "paper_figure", "panel_grid", "new_axes",
           "layer_axis", "plot_layer_curve", "fc_band_label", "marker_handles", "text_sizes", "overlapping_labels",
           "covered_data", "clipped_texts", "clear_texts"]

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



def panel_grid(n: int, layout: str, row_height: float, func: str, *, max_cols: int = 4, extra: float = 0.5):
    """``(fig, axes)`` for ``n`` panels in rows of at most ``max_cols`` (2 in the single-column layout),
    ``row_height`` inches a row plus ``extra`` for a shared legend; ``axes`` flat, the spare panels hidden."""
    ncols = min(n, max_cols if layout == "double" else 2)
    nrows = int(np.ceil(n / ncols))
    fig, axes = paper_figure(layout, row_height * nrows + extra, nrows=nrows, ncols=ncols, squeeze=False, func=func)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()

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


def clipped_texts(fig, tolerance_pt: float = 0.5) -> list[str]:
    """Texts of ``fig`` (drawn first) that run more than ``tolerance_pt`` points off the figure's edge."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    tol = tolerance_pt * fig.dpi / 72.0
    page = fig.bbox
    out = []
    for t, _ in _texts(fig):
        b = t.get_window_extent(r)
        if b.x0 < page.x0 - tol or b.y0 < page.y0 - tol or b.x1 > page.x1 + tol or b.y1 > page.y1 + tol:
            out.append(t.get_text())
    return out


# ----------------------------------------------------------------------------- data hidden by a legend
def _all_axes(fig):
    """Every Axes of ``fig`` with its inset (child) Axes: ``(axes, parent or None)``."""
    def walk(ax, parent):
        yield ax, parent
        for c in getattr(ax, "child_axes", []):
            yield from walk(c, ax)

    for ax in fig.axes:
        yield from walk(ax, None)


def _axes_name(ax) -> str:
    for t in (ax.get_title(), ax.get_title("left"), ax.get_ylabel(), ax.get_xlabel()):
        if t.strip():
            return repr(t.strip().splitlines()[0])
    return "axes at ({:.2f}, {:.2f}, {:.2f}, {:.2f})".format(*(float(v) for v in ax.get_position().bounds))


def _artist_name(a) -> str:
    label = a.get_label() if hasattr(a, "get_label") else ""
    label = "" if not label or str(label).startswith("_") else f" {label!r}"
    return f"{type(a).__name__}{label}"


def _finite_runs(xy):
    """Split an (n, 2) array at non-finite rows into runs of finite points."""
    ok = np.isfinite(xy).all(axis=1)
    if ok.all():
        return [xy]
    cut = np.flatnonzero(np.diff(ok.astype(int)) != 0) + 1
    return [run for run, good in zip(np.split(xy, cut), np.split(ok, cut)) if good[0]]


def _visible_alpha(color_array) -> bool:
    c = np.asarray(color_array, dtype=float)
    return c.size > 0 and bool((c.reshape(-1, 4)[:, 3] > 0).any())


def _data_shapes(ax):
    """``(artist, [(Path in display coords, filled)])`` of every data mark ``ax`` draws: lines (with their
    markers' vertices), scatter offsets, error bars, filled regions, bars/histogram patches and images.
    Background bands (``axvspan``/``axhspan``: patches not in data coordinates) are not data."""
    from matplotlib.collections import Collection
    from matplotlib.path import Path

    out = []
    for line in ax.lines:
        if not line.get_visible() or line.get_xydata().size == 0:
            continue
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        drawn = line.get_linestyle() not in ("None", "none", "", " ")
        paths = []
        for run in _finite_runs(xy):
            if drawn and len(run) > 1:
                paths.append((Path(run), False))
            if line.get_marker() not in (None, "None", "none", "", " "):
                paths.extend((Path(p[None, :]), False) for p in run)
        out.append((line, paths))
    for coll in ax.collections:
        if not isinstance(coll, Collection) or not coll.get_visible():
            continue
        paths = []
        offsets = np.asarray(coll.get_offsets(), dtype=float)
        if type(coll).__name__ == "PathCollection" and offsets.size:  # scatter: one marker per offset
            pts = coll.get_offset_transform().transform(offsets)
            paths = [(Path(p[None, :]), False) for p in pts if np.isfinite(p).all()]
        else:
            filled = _visible_alpha(coll.get_facecolor())
            tr = coll.get_transform()
            for p in coll.get_paths():
                v = tr.transform(np.asarray(p.vertices, dtype=float))
                for run in _finite_runs(v):
                    paths.append((Path(run, closed=filled and len(run) > 2), filled))
        out.append((coll, paths))
    for patch in ax.patches:
        if not patch.get_visible() or not patch.get_transform().contains_branch(ax.transData):
            continue
        p = patch.get_transform().transform_path(patch.get_path())
        v = p.vertices[np.isfinite(p.vertices).all(axis=1)]
        if v.size == 0 or np.ptp(v[:, 0]) == 0 or np.ptp(v[:, 1]) == 0:  # a zero-height bar draws nothing
            continue
        filled = bool(patch.get_fill()) and _visible_alpha([patch.get_facecolor()])
        out.append((patch, [(Path(v, closed=filled), filled)]))
    for im in ax.images:
        if im.get_visible():
            b = im.get_window_extent()
            out.append((im, [(Path([[b.x0, b.y0], [b.x1, b.y0], [b.x1, b.y1], [b.x0, b.y1], [b.x0, b.y0]],
                                   closed=True), True)]))
    return out


def _legend_box(leg, renderer):
    """What a legend hides: its whole box when it has a visible frame, else the box of its entries."""
    frame = leg.get_frame()
    if leg.get_frame_on() and frame.get_visible() and _visible_alpha([frame.get_facecolor()]):
        return leg.get_window_extent(renderer)
    try:
        return leg._legend_box.get_window_extent(renderer)
    except Exception:  # pragma: no cover - private API changed
        return leg.get_window_extent(renderer)


def _inset_box(ax, renderer):
    """What an inset Axes hides: everything it draws (its whole tight box when it has axes or a face)."""
    from matplotlib.transforms import Bbox

    if ax.axison or (ax.patch.get_visible() and _visible_alpha([ax.patch.get_facecolor()])):
        return ax.get_tightbbox(renderer)
    boxes = []
    for a in ax.get_default_bbox_extra_artists():
        if a is ax.patch or a in ax.spines.values() or not a.get_visible():
            continue
        b = a.get_tightbbox(renderer)
        if b is not None and 0 < b.width < np.inf and 0 < b.height < np.inf:
            boxes.append(b)
    return Bbox.union(boxes) if boxes else None


def _overlaps(a, b) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


def _is_inset(ax, fig, boxes) -> bool:
    """A top-level Axes drawn over a larger one (not its twin) is an inset of it."""
    b = boxes[id(ax)]
    for o in fig.axes:
        ob = boxes.get(id(o))
        if o is ax or ob is None or not _overlaps(b, ob) or np.allclose(b.extents, ob.extents):
            continue
        if ob.width * ob.height > b.width * b.height:
            return True
    return False


def covered_data(fig, tolerance_pt: float = 1.0, texts: bool = True) -> list[tuple[str, str, str]]:
    """Legends, inset Axes and (with ``texts``) in-panel texts of ``fig`` that hide plotted data (drawn first).

    A cover is every legend (of an Axes or of the figure), every inset Axes (a child Axes, or an Axes
    that overlaps another) and every text placed on an Axes; its box (for a frameless legend the box of
    its entries) is compared with the data of every Axes it overlaps, clipped to that Axes: line
    segments and markers, scatter points, error bars, filled regions, bars and histogram patches,
    images. A cover is reported when data pass more than ``tolerance_pt`` points inside its box.

    Returns
    -------
    list of (cover, axes, data) descriptions; empty when nothing is hidden.
    """
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    tol = tolerance_pt * fig.dpi / 72.0
    axes = [(a, p) for a, p in _all_axes(fig) if a.get_visible()]
    boxes = {id(a): a.get_window_extent(r) for a, _ in axes}
    covers = []  # (description, box, owner axes or None, axes to skip)
    for ax, parent in axes:
        leg = ax.get_legend()
        if leg is not None and leg.get_visible():
            covers.append((f"legend of {_axes_name(ax)}", _legend_box(leg, r), ax, None))
        if parent is not None or _is_inset(ax, fig, boxes):
            b = _inset_box(ax, r)
            if b is not None:
                covers.append((f"inset {_axes_name(ax)}", b, parent, ax))
        if texts:
            for t in ax.texts:
                if t.get_visible() and t.get_text().strip():
                    covers.append((f"text {t.get_text().strip()!r} on {_axes_name(ax)}", t.get_window_extent(r),
                                   ax, None))
    for leg in fig.legends:
        if leg.get_visible():
            covers.append(("figure legend", _legend_box(leg, r), None, None))
    found = []
    for name, box, owner, skip in covers:
        for ax, _ in axes:
            if ax is skip or (skip is not None and ax in getattr(skip, "child_axes", [])):
                continue
            x0, y0 = max(box.x0, boxes[id(ax)].x0) + tol, max(box.y0, boxes[id(ax)].y0) + tol
            x1, y1 = min(box.x1, boxes[id(ax)].x1) - tol, min(box.y1, boxes[id(ax)].y1) - tol
            if x1 <= x0 or y1 <= y0:
                continue
            region = Bbox.from_extents(x0, y0, x1, y1)
            for artist, paths in _data_shapes(ax):
                if any(p.intersects_bbox(region, filled=filled) for p, filled in paths):
                    found.append((name, _axes_name(ax), _artist_name(artist)))
                    break
    return found


def _top_under(paths, x0: float, x1: float) -> float:
    """The highest display y of ``paths`` (display coords) between display x ``x0`` and ``x1``."""
    top = -np.inf
    for p, _ in paths:
        v = p.vertices
        inside = (v[:, 0] >= x0) & (v[:, 0] <= x1)
        if inside.any():
            top = max(top, float(v[inside, 1].max()))
        for a, b in zip(v[:-1], v[1:]):  # a segment crossing an edge of the span
            for xe in (x0, x1):
                if (a[0] - xe) * (b[0] - xe) < 0:
                    top = max(top, float(a[1] + (b[1] - a[1]) * (xe - a[0]) / (b[0] - a[0])))
    return top


def clear_texts(axes, *, pad_pt: float = 2.0, passes: int = 2):
    """Raise the top of each (linear) y axis in ``axes`` until no data lie under its in-panel texts.

    A text not placed in data coordinates (axes coordinates, perhaps offset by some points) near the top
    of a panel (a count, a statistic) stays where it is;
    the data below it are rescaled so that their highest point under the text's width ends ``pad_pt``
    points below it. The figure is drawn to measure the texts (``passes`` times: new tick labels can
    move a panel a little).

    Parameters
    ----------
    axes : matplotlib Axes or sequence of Axes (of one figure)

    Returns
    -------
    None
    """
    from matplotlib.axes import Axes

    axes = [axes] if isinstance(axes, Axes) else list(axes)
    work = []
    for ax in axes:
        texts = [t for t in ax.texts if t.get_visible() and t.get_text().strip()
                 and not t.get_transform().contains_branch(ax.transData)]  # not placed in data coordinates
        if texts and ax.get_yscale() == "linear":
            work.append((ax, texts))
    if not work:
        return None
    fig = work[0][0].figure
    for _ in range(passes):
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        pad = pad_pt * fig.dpi / 72.0
        changed = False
        for ax, texts in work:
            box = ax.get_window_extent(r)
            lo, hi = ax.get_ylim()
            paths = [pp for _, ps in _data_shapes(ax) for pp in ps]
            need = hi
            for t in texts:
                tb = t.get_window_extent(r)
                top = _top_under(paths, tb.x0, tb.x1)
                frac = (tb.y0 - pad - box.y0) / box.height
                if not np.isfinite(top) or top <= tb.y0 - pad or frac <= 0.05:
                    continue
                y_top = ax.transData.inverted().transform((tb.x0, min(top, box.y1)))[1]
                need = max(need, lo + (y_top - lo) / frac)
            if need > hi:
                ax.set_ylim(lo, need)
                changed = True
        if not changed:
            break
    return None

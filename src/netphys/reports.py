"""Self-contained HTML reports (figures embedded as base64 PNG, tables, config and provenance as tables,
warning boxes) and :func:`save_figure` (PNG + SVG + PDF with editable text)."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from pathlib import Path

import pandas as pd

from .io import atomic_write_bytes, atomic_write_text

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}
table.kv td,table.kv th{text-align:left;vertical-align:top}table.kv td{font-family:monospace;word-break:break-all}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.8em}.note{color:#555;font-size:.9em}
p.intro{background:#f4f7fb;border-left:4px solid #1f4e9c;padding:.5em .8em}
div.warning{background:#fff6e0;border:1px solid #e0a800;border-left:6px solid #e0a800;padding:.5em .9em;margin:1em 0}
div.warning h3{margin:.2em 0 .4em 0;font-size:1em;color:#8a5a00}div.warning li{margin:.2em 0}
"""

#: raster resolution of saved PNGs (the SVG and PDF are vector, with text as text)
PNG_DPI = 300


def save_figure(fig, stem, *, formats=("png", "svg", "pdf"), dpi: int = PNG_DPI, tight: bool | None = None
                ) -> list[Path]:
    """Save a matplotlib Figure as ``stem.png`` (``dpi``), ``stem.svg`` and ``stem.pdf``; return the paths.

    Text stays text: SVG with ``svg.fonttype: none`` (``<text>`` elements) and PDF with Type-42 fonts,
    so labels can be edited. ``tight=None`` keeps the figure's own size when it uses a constrained
    layout (the paper figures: exactly 3.5 or 7 in wide) and crops to the drawn area otherwise.
    """
    from .plotting.style import paper_style

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if tight is None:
        eng = fig.get_layout_engine()
        tight = not (eng is not None and type(eng).__name__ == "ConstrainedLayoutEngine")
    paths = []
    with paper_style():
        for ext in formats:
            kw = {"dpi": dpi} if ext == "png" else {}
            if tight:
                kw["bbox_inches"] = "tight"
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, **kw)
            p = stem.with_suffix("." + ext)
            atomic_write_bytes(p, buf.getvalue())
            paths.append(p)
    return paths


def _png_b64(fig, dpi: int = 150) -> str:
    from .plotting.style import paper_style

    buf = io.BytesIO()
    with paper_style():
        fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt_value(v, max_items: int = 12) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, (str, int, float, bool)) or x is None for x in v):
            items = [_fmt_value(x) for x in v[:max_items]]
            more = f" ... ({len(v) - max_items} more)" if len(v) > max_items else ""
            return ", ".join(items) + more if v else "(none)"
        return json.dumps(v, default=str)
    if v is None:
        return "-"
    return str(v)


def flatten(obj, prefix: str = "", max_depth: int = 4) -> list[tuple[str, str]]:
    """``(dotted key, readable value)`` rows of a nested mapping (lists of scalars joined by commas)."""
    rows = []
    if isinstance(obj, dict) and max_depth > 0:
        if not obj and prefix:
            return [(prefix, "(none)")]
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                rows.extend(flatten(v, key, max_depth - 1))
            elif isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
                for i, x in enumerate(v):
                    rows.extend(flatten(x, f"{key}[{i}]", max_depth - 1))
            else:
                rows.append((key, _fmt_value(v)))
    else:
        rows.append((prefix or "value", _fmt_value(obj)))
    return rows


def null_warnings(result) -> list[str]:
    """Warnings for layer values that are not above their estimator's shuffle null.

    Looks for ``information`` with ``null`` (and ``null_band``, Figure-3 results) and
    ``category_information`` with ``category_null`` (Figure 5). A value counts as not above chance when
    its mean over realisations is below the mean null plus its band (2 SD of the null).
    """
    import numpy as np

    out = []
    pairs = (("information", "null", "null_band"), ("category_information", "category_null", None))
    for var, nvar, band in pairs:
        if var not in getattr(result, "data_vars", {}) or nvar not in result.data_vars:
            continue
        v, n = result[var], result[nvar]
        if "realisation" in v.dims:
            v, n = v.mean("realisation"), n.mean("realisation")
        b = 0.0
        if band and band in result.data_vars:
            b = result[band]
            b = (b.mean("realisation") if "realisation" in b.dims else b).fillna(0.0)
        below = (v < n + b) & np.isfinite(v) & np.isfinite(n)
        total = int((np.isfinite(v) & np.isfinite(n)).sum())
        k = int(below.sum())
        if not k:
            continue
        strict = int(((v < n) & np.isfinite(v) & np.isfinite(n)).sum())
        where = below.to_dataframe(name="b")
        where = where[where["b"]].reset_index()
        cols = [c for c in ("model", "network", "feature", "layer") if c in where]
        ex = ["/".join(str(r[c]) for c in cols) for _, r in where.head(6).iterrows()]
        out.append(f"{var}: {k} of {total} layer values are not above the shuffle null of their estimator "
                   f"({strict} below the null's mean, the rest inside its band), e.g. " + ", ".join(ex)
                   + (" ..." if k > 6 else "") + "; these points carry no evidence of information (more "
                   "images, or fewer bins, raise the signal above the bias).")
    return out


class Report:
    """Accumulate sections, figures and tables; write one self-contained HTML file."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> "Report":
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def text(self, text: str, cls: str = "") -> "Report":
        c = f' class="{cls}"' if cls else ""
        self._parts.append(f"<p{c}>{html.escape(text)}</p>")
        return self

    def intro(self, text: str) -> "Report":
        """The two or three sentences that open a section: what is shown, what the paper found."""
        if text and text.strip():
            self.text(" ".join(text.split()), cls="intro")
        return self

    def warning(self, messages, title: str = "Read with care") -> "Report":
        """A highlighted box listing ``messages`` (nothing when there are none)."""
        messages = [messages] if isinstance(messages, str) else [m for m in messages if m]
        if messages:
            items = "".join(f"<li>{html.escape(m)}</li>" for m in messages)
            self._parts.append(f'<div class="warning"><h3>{html.escape(title)}</h3><ul>{items}</ul></div>')
        return self

    def figure(self, fig, caption: str = "", stem=None) -> "Report":
        """Embed ``fig`` (PNG) with ``caption``; with ``stem`` also save it (:func:`save_figure`)."""
        b64 = _png_b64(fig)
        if stem is not None:
            save_figure(fig, stem)
        self._parts.append(f'<figure><img src="data:image/png;base64,{b64}"/>'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return self

    def paper_figure(self, make, caption: str = "", stem=None) -> "Report":
        """A figure in both journal layouts: ``make(layout)`` returns a Figure for ``"double"`` and
        ``"single"``; the double-column one is embedded, and with ``stem`` both are saved
        (``stem.*`` double column, ``stem_single.*`` single column). Both figures are closed."""
        import matplotlib.pyplot as plt

        fig = make("double")
        try:
            self.figure(fig, caption, stem=stem)
        finally:
            plt.close(fig)
        if stem is not None:
            stem = Path(stem)
            one = make("single")
            try:
                save_figure(one, stem.with_name(stem.name + "_single"))
            finally:
                plt.close(one)
        return self

    def mapping(self, obj: dict, caption: str = "", header=("field", "value")) -> "Report":
        """A nested mapping as a two-column table (dotted keys, readable values)."""
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in flatten(obj))
        cap = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
        head = f"<tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>"
        self._parts.append(cap + f"<table class='kv'>{head}{rows}</table>")
        return self

    def image(self, path, caption: str = "") -> "Report":
        """Embed an existing PNG file."""
        b64 = base64.b64encode(Path(path).read_bytes()).decode()
        self._parts.append(f'<figure><img src="data:image/png;base64,{b64}"/>'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return self

    def link(self, href: str, text: str) -> "Report":
        self._parts.append(f'<p><a href="{html.escape(href)}">{html.escape(text)}</a></p>')
        return self

    def table(self, df: pd.DataFrame, caption: str = "", float_format="{:.4g}") -> "Report":
        t = df.to_html(float_format=lambda v: float_format.format(v), border=0)
        cap = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
        self._parts.append(cap + t)
        return self

    def json(self, obj, caption: str = "") -> "Report":
        cap = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
        self._parts.append(cap + "<pre>" + html.escape(json.dumps(obj, indent=2, default=str)) + "</pre>")
        return self

    def to_html(self) -> str:
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        sub = f"<p class='note'>{html.escape(self.subtitle)}</p>" if self.subtitle else ""
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>{sub}"
                + "\n".join(self._parts)
                + f"<hr/><p class='note'>Generated by netphys on {now}.</p></body></html>")

    def write(self, path) -> Path:
        path = Path(path)
        atomic_write_text(path, self.to_html())
        return path

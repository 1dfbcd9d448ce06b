"""Effect tables: a metric of the intact network next to the same metric under interventions.

:func:`ablation_effects` clamps the top vs bottom share of a layer's channels by a per-channel score
(gOSI in Ukita 2019) and measures the change of the test loss; :func:`invariance_effects` measures
single-unit shift invariance with the top (and bottom) half of a layer ablated. The scores come from
any per-unit Dataset with ``layer`` and ``channel`` coordinates, e.g.
:func:`netphys.stats.selectivity.channel_gosi`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import check_int, param_error
from ..recording import sample_units
from ..stimuli import StimulusSet
from .ablation import ablate_units, split_by_score
from .invariance import cv_by_layer, shift_invariance

__all__ = ["ablation_effects", "invariance_effects"]


def _check_scores(scores, score: str, func: str) -> xr.Dataset:
    if not isinstance(scores, xr.Dataset) or score not in scores or "layer" not in scores.coords \
            or "channel" not in scores.coords:
        raise param_error("scores", func, f"an xarray.Dataset with a {score!r} variable and 'layer', 'channel' "
                          "unit coordinates", type(scores).__name__, "e.g. channel_gosi(grating_responses(...))")
    return scores


def _layer_scores(scores: xr.Dataset, layer: str, score: str, func: str):
    sel = scores["layer"].values == layer
    if not sel.any():
        raise param_error("layers", func, f"layers of the scores ({sorted(set(scores['layer'].values.tolist()))})",
                          layer)
    return sel


def ablation_effects(model, test: StimulusSet, scores: xr.Dataset, layers, *, fraction: float = 0.5,
                     n_random: int = 0, site: str = "post", score: str = "gosi", random_state=0,
                     batch_size: int = 256, progress: bool = False) -> pd.DataFrame:
    """Change of test loss when the top vs bottom ``fraction`` of a layer's channels by ``score`` are ablated.

    Parameters
    ----------
    model : nn.Module
        A classifier; restored after every ablation.
    test : StimulusSet
        Labelled test images.
    scores : xarray.Dataset, dims (unit)
        One unit per channel with ``layer`` and ``channel`` coordinates and a ``score`` variable;
        ``peak_response`` and ``zero_response`` (as from :func:`~netphys.stats.selectivity.gosi`)
        are summarised per group when present.
    layers : sequence of str
        Layers ablated, one at a time.
    fraction : float, default 0.5
        Share of each layer's channels in each group (:func:`~netphys.interventions.split_by_score`).
    n_random : int, default 0
        Random sets of the same size ablated per layer (a control not in the paper).
    site : {"post", "pre"}
    score : str, default "gosi"
    random_state : int or Generator
        Draws the random sets.
    batch_size : int
    progress : bool

    Returns
    -------
    pandas.DataFrame, indexed by layer
        ``n_channels``, ``n_ablated``, ``base_loss``; ``d_top``, ``d_bottom`` (ablated minus
        intact mean cross-entropy), ``d_random`` and ``d_random_sd``; ``ratio`` = d_top / d_bottom;
        ``marked`` (the paper's asterisk: ``d_top > 2 d_bottom`` with ``d_top > 0``); the accuracy
        changes ``d_acc_top``, ``d_acc_bottom``; the groups' mean score ``<score>_top`` /
        ``<score>_bottom``, and, when present, mean peak response ``peak_*`` (the paper's control
        for silent units) and number of silent channels ``silent_*``.

    References
    ----------
    J. Ukita, ICLR 2019 submission, section 3.4 and Fig. 5.
    """
    from tqdm.auto import tqdm

    from ..training.evaluate import evaluate

    func = "ablation_effects"
    _check_scores(scores, score, func)
    n_random = check_int(n_random, "n_random", func, min_value=0)
    base = evaluate(model, test, batch_size=batch_size)
    rng = np.random.default_rng(random_state)
    rows = []
    for l in tqdm(list(layers), desc="ablation", disable=not progress):
        sel = _layer_scores(scores, l, score, func)
        order = np.argsort(scores["channel"].values[sel])
        ch = scores["channel"].values[sel][order]
        g = scores[score].values[sel][order]
        top, bottom = split_by_score(g, fraction)
        res = {}
        for name, idx in (("top", top), ("bottom", bottom)):
            with ablate_units(model, l, ch[idx], site=site):
                res[name] = evaluate(model, test, batch_size=batch_size)
        rand = []
        for _ in range(n_random):
            idx = np.sort(rng.choice(ch.size, size=top.size, replace=False))
            with ablate_units(model, l, ch[idx], site=site):
                rand.append(evaluate(model, test, batch_size=batch_size)["loss"] - base["loss"])
        d_top = res["top"]["loss"] - base["loss"]
        d_bot = res["bottom"]["loss"] - base["loss"]
        row = {"layer": l, "n_channels": int(ch.size), "n_ablated": int(top.size),
               "base_loss": base["loss"], "d_top": d_top, "d_bottom": d_bot,
               "d_random": float(np.mean(rand)) if rand else np.nan,
               "d_random_sd": float(np.std(rand, ddof=1)) if len(rand) > 1 else np.nan,
               "ratio": d_top / d_bot if d_bot != 0 else np.inf,
               "marked": bool(d_top > 0 and d_top > 2 * d_bot),
               "d_acc_top": res["top"]["top1"] - base["top1"],
               "d_acc_bottom": res["bottom"]["top1"] - base["top1"],
               f"{score}_top": float(g[top].mean()), f"{score}_bottom": float(g[bottom].mean())}
        if "peak_response" in scores:
            peak = scores["peak_response"].values[sel][order]
            row.update(peak_top=float(peak[top].mean()), peak_bottom=float(peak[bottom].mean()))
        if "zero_response" in scores:
            silent = scores["zero_response"].values[sel][order]
            row.update(silent_top=int(silent[top].sum()), silent_bottom=int(silent[bottom].sum()))
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


def invariance_effects(model, test: StimulusSet, scores: xr.Dataset, layers, ablate, *, units=250,
                       fraction: float = 0.5, control: bool = True, shift: float = 0.1,
                       threshold: float = 0.9, site: str = "post", score: str = "gosi", random_state=0,
                       batch_size: int = 256):
    """Shift invariance of the intact network and with the top (and bottom) ``fraction`` of the
    channels of each layer in ``ablate`` (by ``score``) clamped to zero.

    Parameters
    ----------
    model : nn.Module
    test : StimulusSet
    scores : xarray.Dataset
        One unit per channel with ``layer``, ``channel`` and ``score`` (e.g. gOSI).
    layers : sequence of str
        Layers whose units are measured.
    ablate : sequence of str
        Layers ablated one at a time.
    units : int or DataFrame
        Units per layer (sampled once and shared by every network) or a unit table.
    fraction : float
    control : bool, default True
        Also ablate the bottom ``fraction`` (a control not in the paper: does removing *any* half of
        the layer disrupt invariance as much?).
    shift, threshold, site, random_state, batch_size
        As in :func:`netphys.interventions.shift_invariance`.
    score : str, default "gosi"

    Returns
    -------
    summary : pandas.DataFrame
        :func:`~netphys.interventions.cv_by_layer` rows with ``network`` (``"intact"``, ``"<layer>
        top-<score> ablated"``, ``"<layer> bottom-<score> ablated"``; ``gOSI`` for ``score="gosi"``),
        ``ablated_layer`` and ``group``.
    tests : pandas.DataFrame
        Per ablated network and layer: mean CV (over directions) of the units finite in both,
        intact vs ablated, and the paired t-test over those units (t, p).
    per_unit : dict
        Network name -> :func:`~netphys.interventions.shift_invariance` Dataset.

    References
    ----------
    J. Ukita, ICLR 2019 submission, section 3.5 and Fig. 6.
    """
    from scipy.stats import ttest_rel

    func = "invariance_effects"
    _check_scores(scores, score, func)
    label = "gOSI" if score == "gosi" else score
    layers = list(layers)
    table = units if isinstance(units, pd.DataFrame) else sample_units(
        model, layers, units, input_size=test.size, random_state=random_state, allow_fewer=True)
    kw = dict(units=table, shift=shift, threshold=threshold, site=site, batch_size=batch_size)
    per_unit = {"intact": shift_invariance(model, test, **kw)}
    meta = {"intact": ("none", "none")}
    for l in ablate:
        sel = _layer_scores(scores, l, score, func)
        top, bottom = split_by_score(scores[score].values[sel], fraction)
        groups = (("top", top), ("bottom", bottom)) if control else (("top", top),)
        for group, idx in groups:
            name = f"{l} {group}-{label} ablated"
            with ablate_units(model, l, scores["channel"].values[sel][idx], site=site):
                per_unit[name] = shift_invariance(model, test, **kw)
            meta[name] = (l, group)
    summary = pd.concat([cv_by_layer(d).assign(network=k, ablated_layer=meta[k][0], group=meta[k][1])
                         for k, d in per_unit.items()], ignore_index=True)
    tests = []
    base = per_unit["intact"]
    for name, d in per_unit.items():
        if name == "intact":
            continue
        for l in layers:
            a = base["cv"].values[base["layer"].values == l].mean(axis=1)
            b = d["cv"].values[d["layer"].values == l].mean(axis=1)
            ok = np.isfinite(a) & np.isfinite(b)
            t = ttest_rel(b[ok], a[ok]) if ok.sum() > 2 and np.ptp(b[ok] - a[ok]) > 0 else None
            tests.append({"network": name, "ablated_layer": meta[name][0], "group": meta[name][1], "layer": l,
                          "n_units": int(ok.sum()),
                          "cv_intact": float(np.mean(a[ok])) if ok.any() else np.nan,
                          "cv_ablated": float(np.mean(b[ok])) if ok.any() else np.nan,
                          "t": float(t.statistic) if t is not None else np.nan,
                          "p": float(t.pvalue) if t is not None else np.nan})
    return summary, pd.DataFrame(tests), per_unit

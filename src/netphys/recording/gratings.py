"""Grating responses of one unit per channel: the recorder of the orientation-selectivity measures.

It lives in ``recording`` (not beside :mod:`netphys.stimuli.gratings`) because it runs a model: the
stimuli floor makes images and knows nothing of networks. Both kinds of unit go through the one
recorder, :func:`netphys.recording.record` (the centre unit via a unit table, the channel mean via
``reduce="channel_mean"``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import check_choice
from ..models.layers import resolve_layer
from ..stimuli import StimulusSet
from .record import layer_shapes, record

__all__ = ["centre_units", "grating_responses"]


def centre_units(model, layers, input_size: int) -> pd.DataFrame:
    """Unit table of the centre unit ``(H // 2, W // 2)`` of every channel of each layer.

    FC layers contribute every feature (``row = col = -1``). ``layers`` are call sites as for
    :func:`record` (aliases, module names, block outputs such as ``layer3``, ``name:k`` calls).
    Pass it to :func:`record` as ``units``.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    shapes = layer_shapes(model, layers, input_size)
    frames = []
    for l in layers:
        shp = shapes[resolve_layer(model, l, "centre_units", sites=True).alias]
        if len(shp) == 3:
            c, h, w = shp
            frames.append(pd.DataFrame({"layer": l, "channel": np.arange(c), "row": h // 2, "col": w // 2}))
        else:
            frames.append(pd.DataFrame({"layer": l, "channel": np.arange(shp[0]), "row": -1, "col": -1}))
    return pd.concat(frames, ignore_index=True)


def grating_responses(model, stimuli: StimulusSet, layers, *, response: str = "centre", site: str = "post",
                      batch_size: int = 256) -> xr.DataArray:
    """Responses of one unit per channel to a grating set.

    Parameters
    ----------
    model : nn.Module
    stimuli : StimulusSet
        From :func:`netphys.stimuli.gratings.gratings` at the model's input size.
    layers : sequence of str
    response : {"centre", "mean"}, default "centre"
        A conv channel's unit: the centre ``(H // 2, W // 2)`` of its map (the paper's text), or the
        map's spatial mean (the authors' code). FC layers: every feature.
    site : {"post", "pre"}, default "post"
        ``"post"``: the ReLU output the next layer receives (non-negative, gOSI's domain).
    batch_size : int

    Returns
    -------
    xarray.DataArray, dims (stimulus, unit)
        Unit coordinates ``layer``, ``channel``, ``row``, ``col`` (-1 for means and FC units),
        ``site``; stimulus coordinates ``orientation``, ``phase``, ``sf``; ``attrs["response"]``.

    References
    ----------
    J. Ukita, ICLR 2019 submission, section 2.2; code github.com/ukky17/ori_selectivity_CNN.
    """
    func = "grating_responses"
    check_choice(response, "response", func, ("centre", "mean"))
    check_choice(site, "site", func, ("post", "pre"))
    layers = [layers] if isinstance(layers, str) else list(layers)
    if response == "mean":
        rec = record(model, stimuli, layers, units="all", site=site, batch_size=batch_size, reduce="channel_mean")
    else:
        rec = record(model, stimuli, units=centre_units(model, layers, stimuli.size), site=site,
                     batch_size=batch_size)
    rec.attrs["response"] = response
    return rec
